"""What the benchmark scripts share: a ready-to-call parallel training step and a timer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from pimc_jax import parallel
from pimc_jax.step import create_train_state, make_parallel_step
from pimc_jax.train import PretrainingSetup


def parallel_step_runner(
    config: ml_collections.ConfigDict, setup: PretrainingSetup, batch: dict[str, np.ndarray]
) -> tuple[Callable[[], Any], dict[str, np.ndarray]]:
    """``(run, sharded)``: ``run()`` applies one mapped training step to ``batch``.

    The state is replicated over all local devices and carried from call to call, as in
    the training loop; ``sharded`` is ``batch`` split over the devices.
    """
    state = parallel.replicate(
        jax.device_get(create_train_state(setup.spec, setup.optimizer, jax.random.key(0)))
    )
    step = make_parallel_step(setup.spec, setup.optimizer, augment=config.augment)
    sharded = parallel.shard_batch(batch)
    rng = parallel.replicate(jax.random.key_data(jax.random.key(1)))

    def run() -> Any:
        nonlocal state
        state, metrics = step(state, sharded, rng)
        return metrics

    return run, sharded


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` (blocked until ready) after ``warmup`` untimed calls."""
    for _ in range(warmup):  # compilation
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))
