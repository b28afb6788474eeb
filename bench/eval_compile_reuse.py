"""What the cached evaluation forward functions save: compiled code reused across calls.

    python bench/eval_compile_reuse.py                # default towers, 300 pixels
    python bench/eval_compile_reuse.py --pixels=1000 --repeats=5

An evaluation embeds several splits (train, validation, test) and, when it polls a
training run, every new checkpoint of the same spec. :func:`pimc_jax.evaluation.towers.
frozen_features` looks its forward function and the function's ``jax.jit`` wrapper up by
``(spec, tower, band names)``, so only the first call compiles. This script times, side by
side in one process and alternating:

* ``cached``: ``frozen_features`` with fresh parameters of the same spec each call (a
  polled checkpoint), after one warm-up call;
* ``rebuilt``: the same forward function built anew and wrapped in a new ``jax.jit`` each
  call (what a per-call closure costs: a trace and a compile every time).

It prints the median seconds per call of each, their ratio, and the largest difference
between the two outputs (they compute the same thing).
"""

from __future__ import annotations

import argparse
import json
import time

from pimc_jax import parallel

parallel.set_xla_cpu_flags()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from pimc_jax.evaluation import towers  # noqa: E402
from pimc_jax.models import ModelSpec, init_params  # noqa: E402


def _inputs(spec: ModelSpec, pixels: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    dates = np.sort(rng.choice(365, size=(pixels, 24)), axis=1).astype(np.int32)
    return {
        "bands": rng.uniform(0.0, 0.5, (pixels, 24, len(spec.band_names))).astype(np.float32),
        "dates": dates,
        "mask": np.ones((pixels, 24), bool),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    spec = ModelSpec()
    inputs = _inputs(spec, args.pixels, np.random.default_rng(0))
    names = spec.band_names

    # Fresh parameters per call (a polled checkpoint), made before the timing.
    params = [init_params(spec, seed) for seed in range(args.repeats + 1)]

    def cached(seed: int) -> np.ndarray:
        return towers.frozen_features(params[seed], "rp", inputs)

    def rebuilt(seed: int) -> np.ndarray:
        # A new function object each call, as a per-call closure would be: new trace, new
        # executable. Uncached twins of towers.predict's two lookups.
        forward = towers._tower_features.__wrapped__(spec, "rp", names)
        apply = towers._jitted.__wrapped__(forward)
        rows = [
            np.asarray(
                apply(params[seed].variables, {k: v[s : s + 256] for k, v in inputs.items()})
            )
            for s in range(0, args.pixels, 256)
        ]
        return np.concatenate(rows)

    cached(0)  # the one compile the cache keeps
    times: dict[str, list[float]] = {"cached": [], "rebuilt": []}
    difference = 0.0
    for seed in range(1, args.repeats + 1):
        outputs = {}
        for name, fn in (("cached", cached), ("rebuilt", rebuilt)):
            start = time.perf_counter()
            outputs[name] = jax.block_until_ready(fn(seed))
            times[name].append(time.perf_counter() - start)
        difference = max(difference, float(np.abs(outputs["cached"] - outputs["rebuilt"]).max()))
    medians = {name: float(np.median(values)) for name, values in times.items()}
    print(
        json.dumps(
            {
                "pixels": args.pixels,
                "repeats": args.repeats,
                "seconds_per_call": medians,
                "rebuilt_over_cached": medians["rebuilt"] / medians["cached"],
                "max_abs_difference": difference,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
