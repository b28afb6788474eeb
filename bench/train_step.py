"""Pairs/s of the pre-training step on 1 vs N devices, and the recurrence plots' share.

    python bench/train_step.py                       # default config, 1 vs 4 forced CPU devices
    python bench/train_step.py --config=configs/pretrain_pastis.py --devices=1  # on a GPU

Each device count runs in its own process (XLA fixes the CPU device count at start-up),
all with the same global batch drawn by the real input pipeline. Per setting it reports
the median step time, pairs/s, and the time of the recurrence-plot computation alone
(the same jitted ``series_to_plots`` the step calls, on one device's share of the batch)
as a share of the step. On CPU, forced devices share the same cores: the 1-vs-N ratio
shows the overhead of the data-parallel program, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child(config_path: str, repeats: int, overrides: list[str]) -> dict:
    import jax
    from _harness import median_seconds, parallel_step_runner

    from pimc_jax.data.pipeline import PairBatches
    from pimc_jax.preprocessing import series_to_plots
    from pimc_jax.train import build_pretraining

    config = _load_config(config_path, overrides)
    setup = build_pretraining(config)
    batch = next(
        PairBatches(setup.sampler, batch_size=config.global_batch_size, seed=0, end_step=1)
    )
    run_step, sharded = parallel_step_runner(config, setup, batch)
    step_time = median_seconds(run_step, repeats)
    local = {k: v[0] for k, v in sharded.items()}
    plots = jax.jit(lambda b, d, m: series_to_plots(setup.spec, b, d, m))
    rp_time = median_seconds(lambda: plots(local["bands"], local["dates"], local["mask"]), repeats)
    return {
        "devices": jax.local_device_count(),
        "global_batch": config.global_batch_size,
        "step_s": step_time,
        "pairs_per_s": config.global_batch_size / step_time,
        "rp_s_per_device": rp_time,
        "rp_share": rp_time / step_time,
        "platform": jax.devices()[0].platform,
    }


def _load_config(config_path: str, overrides: list[str]):
    from pimc_jax.launcher import load_config

    config = load_config(ROOT / config_path)
    values = {}
    for item in overrides:
        key, value = item.split("=", 1)
        value = json.loads(value)
        values[key] = tuple(value) if isinstance(value, list) else value
    config.update_from_flattened_dict(values)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/pretrain.py")
    parser.add_argument("--devices", default="1,4", help="comma-separated device counts")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], help="key=json value override")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT", json.dumps(_child(args.config, args.repeats, args.set)))
        return
    results = []
    for count in [int(c) for c in args.devices.split(",")]:
        # Only affects the CPU platform; on a GPU host the real devices are used.
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}")
        command = [
            sys.executable,
            __file__,
            "--child",
            "--config",
            args.config,
            "--repeats",
            str(args.repeats),
        ] + [f"--set={s}" for s in args.set]
        out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            sys.exit(f"{count} device(s) failed:\n{out.stderr[-4000:]}")
        results.append(json.loads(out.stdout.split("RESULT", 1)[1]))
    print(
        f"config: {args.config}  platform: {results[0]['platform']}  "
        f"global batch: {results[0]['global_batch']}"
    )
    print(f"{'devices':>8} {'step ms':>9} {'pairs/s':>9} {'RP ms/dev':>10} {'RP share':>9}")
    for r in results:
        print(
            f"{r['devices']:>8} {1e3 * r['step_s']:>9.1f} {r['pairs_per_s']:>9.0f} "
            f"{1e3 * r['rp_s_per_device']:>10.2f} {100 * r['rp_share']:>8.1f}%"
        )
    base = results[0]["pairs_per_s"]
    for r in results[1:]:
        print(
            f"pairs/s ratio {r['devices']} vs {results[0]['devices']} device(s): "
            f"{r['pairs_per_s'] / base:.2f}x"
        )


if __name__ == "__main__":
    main()
