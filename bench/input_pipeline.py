"""Pairs/s the host input pipeline delivers against pairs/s the training step consumes.

    python bench/input_pipeline.py [--config=configs/pretrain.py] [--batches=40]

Both are measured in this one run, on the same machine and config: the loader alone
(``PairBatches`` with the config's worker threads, drained as fast as possible), then the
jitted pre-training step alone on a batch from it (all local devices). The loader must
deliver comfortably more than the step consumes, or devices starve. While the real loop
runs, both compete for the same cores, so the step-alone number is an upper bound.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import jax
from _harness import median_seconds, parallel_step_runner

from pimc_jax import parallel
from pimc_jax.data.pipeline import PairBatches
from pimc_jax.launcher import load_config
from pimc_jax.train import build_pretraining

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/pretrain.py")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="loader threads (config's)")
    args = parser.parse_args()
    config = load_config(ROOT / args.config)
    threads = args.threads or config.data.num_threads

    setup = build_pretraining(config)
    sampler = setup.sampler
    batch_size = config.global_batch_size
    # Warm the sampler's per-patch caches (composites, date scores) as a long run would.
    next(PairBatches(sampler, batch_size=batch_size, seed=1, end_step=1, num_threads=1))

    start = time.perf_counter()
    loader = PairBatches(
        sampler,
        batch_size=batch_size,
        seed=0,
        end_step=args.batches,
        num_threads=threads,
        prefetch=2 * threads,
    )
    batch = collections.deque(loader, maxlen=1)[0]  # drain; keep the last batch
    loader.close()
    delivered = args.batches * batch_size / (time.perf_counter() - start)

    run_step, _ = parallel_step_runner(config, setup, batch)
    consumed = batch_size / median_seconds(run_step, repeats=10)

    print(
        f"config: {args.config}  global batch {batch_size}  loader threads {threads}  "
        f"devices {jax.local_device_count()} ({jax.devices()[0].platform})"
    )
    print(f"loader delivers {delivered:10.0f} pairs/s")
    print(f"step consumes   {consumed:10.0f} pairs/s")
    print(f"ratio delivered/consumed: {delivered / consumed:.2f}x")


if __name__ == "__main__":
    parallel.set_xla_cpu_flags()  # before JAX starts its backends
    main()
