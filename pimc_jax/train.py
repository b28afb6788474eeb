"""The pre-training loop: data, the parallel step, checkpoints and metrics.

:func:`pretrain` is what ``python launch.py --config=configs/pretrain.py``
runs. Resume order is explicit: the latest checkpoint in ``WORKDIR/checkpoints``,
else fresh parameters from ``config.seed``.

Determinism: the batch of step ``i`` depends only on ``(config.seed, process, i)``
and the step's randomness only on ``(config.seed, i, global row)``, so a run
resumed from a checkpoint continues exactly as if it had never stopped, and the
same global batch gives the same losses on any number of devices.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from pimc_jax import parallel
from pimc_jax.checkpoint import CheckpointStore, read_meta
from pimc_jax.data import load_patches
from pimc_jax.data.pairs import PairSampler
from pimc_jax.data.patches import Patch
from pimc_jax.data.pipeline import PairBatches
from pimc_jax.data.statistics import image_statistics
from pimc_jax.metrics import MetricWriter
from pimc_jax.models import ModelSpec
from pimc_jax.optim import learning_rate_schedule, make_optimizer
from pimc_jax.step import TrainState, create_train_state, make_parallel_step


@dataclasses.dataclass(frozen=True)
class PretrainingSetup:
    """What a pre-training run is built from: this process's data, the model, the optimizer."""

    patches: Sequence[Patch]
    spec: ModelSpec
    sampler: PairSampler
    optimizer: optax.GradientTransformation


def build_pretraining(config: ml_collections.ConfigDict) -> PretrainingSetup:
    """Loads this process's patches and builds the spec, pair sampler and optimizer."""
    patches = load_patches(
        config.data, process_index=jax.process_index(), process_count=jax.process_count()
    )
    image_mean, image_std = image_statistics(patches, tuple(config.data.image_bands))
    spec = ModelSpec.from_config(
        config, band_names=patches[0].band_names, image_mean=image_mean, image_std=image_std
    )
    sampler = PairSampler(
        patches,
        pixels_per_patch=config.data.pixels_per_patch,
        crop_size=config.data.crop_size,
        image_bands=tuple(config.data.image_bands),
        max_dates=config.data.max_dates,
        sampling=config.data.sampling,
        image_date=config.data.image_date,
        seed=config.seed,
    )
    return PretrainingSetup(patches, spec, sampler, make_optimizer(config))


class _Preemption:
    """Turns SIGTERM into a flag the loop checks, so it can checkpoint and exit cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _Preemption:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # Not the main thread: leave signals alone.
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        logging.warning("SIGTERM received: saving a checkpoint and stopping.")
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def agreed(self, check_peers: bool) -> bool:
        """True once any process was asked to stop.

        Alone, the local flag is enough. With several processes they must stop at the
        same step, which takes a collective: it runs only when ``check_peers`` (the
        loop passes logging steps) so it stays off the per-step path.
        """
        if jax.process_count() == 1:
            return self.requested
        if not check_peers:
            return False
        return bool(np.any(multihost_utils.process_allgather(np.array(self.requested))))


def _check_batch_size(config: ml_collections.ConfigDict) -> int:
    """Per-process batch size; the global batch must split over processes and devices."""
    devices, processes = jax.device_count(), jax.process_count()
    if config.global_batch_size % devices:
        raise ValueError(
            f"global_batch_size={config.global_batch_size} is not divisible by the "
            f"{devices} devices of this run"
        )
    return config.global_batch_size // processes


_METRIC_ORDER = (
    "loss",
    "rp_to_image_top1",
    "image_to_rp_top1",
    "temperature",
    "grad_norm",
    "param_norm",
)


def _host_metrics(metrics: Any) -> dict[str, float]:
    """First device's copy of the (replicated) step metrics, in display order; NaN → error."""
    values = {k: float(np.asarray(metrics[k][0])) for k in _METRIC_ORDER}
    bad = [k for k, v in values.items() if not np.isfinite(v)]
    if bad:
        raise FloatingPointError(f"Non-finite training metrics {bad}: {values}")
    return values


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Pre-trains PIMC as ``config`` says, writing everything to ``workdir``.

    Returns:
      The metrics of the last logged step (empty if no step ran).
    """
    workdir_path = Path(workdir)
    is_main = parallel.is_main_process()
    per_host_batch = _check_batch_size(config)

    setup = build_pretraining(config)
    spec, optimizer = setup.spec, setup.optimizer
    schedule = learning_rate_schedule(config)

    store = CheckpointStore(workdir_path, max_to_keep=config.keep_checkpoints)
    init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
    state = jax.device_get(create_train_state(spec, optimizer, init_rng))
    start_step = 0
    latest = store.latest_step()
    if latest is not None:
        # Compare specs before touching arrays, so a changed model gets a clear message.
        saved_spec = ModelSpec.from_dict(read_meta(store.directory / str(latest))["spec"])
        if saved_spec != spec:
            saved, now = saved_spec.to_dict(), spec.to_dict()
            changed = {k: (saved[k], now[k]) for k in now if saved[k] != now[k]}
            raise ValueError(
                f"The checkpoint in {store.directory} was trained with a different model or "
                f"data spec (saved vs now: {changed}); use a new --workdir to start afresh."
            )
        params, opt_state, meta = store.restore(latest, state.params, state.opt_state)
        start_step = int(meta["step"])
        state = TrainState(
            step=np.asarray(start_step, np.int32), params=params, opt_state=opt_state
        )
        logging.info("Resumed from %s at step %d", store.directory / str(latest), start_step)
    if is_main:
        workdir_path.mkdir(parents=True, exist_ok=True)
        (workdir_path / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    batches = PairBatches(
        setup.sampler,
        batch_size=per_host_batch,
        seed=config.seed * 1_000_003 + jax.process_index(),
        start_step=start_step,
        end_step=config.total_steps,
        num_threads=config.data.num_threads,
        prefetch=config.data.prefetch,
    )
    parallel_step = make_parallel_step(spec, optimizer, augment=config.augment)
    replicated_state = parallel.replicate(state)
    replicated_rng = parallel.replicate(jax.random.key_data(step_rng))
    writer = MetricWriter(workdir_path, total_steps=config.total_steps, enabled=is_main)
    if is_main:
        logging.info(
            "Pre-training %d → %d steps, global batch %d over %d devices (%d processes)",
            start_step,
            config.total_steps,
            config.global_batch_size,
            jax.device_count(),
            jax.process_count(),
        )

    def save(step: int, force: bool = False) -> None:
        host = parallel.unreplicate(replicated_state)
        store.save(step, host.params, host.opt_state, spec, config.to_dict(), force=force)

    last_metrics: dict[str, float] = {}
    last_log: tuple[int, float] | None = None
    # Whatever happens in the loop, let in-flight checkpoint writes finish.
    with _Preemption() as preemption:
        try:
            for step in range(start_step + 1, config.total_steps + 1):
                batch = next(batches)
                replicated_state, metrics = parallel_step(
                    replicated_state, parallel.shard_batch(batch), replicated_rng
                )
                log_step = step % config.log_every_steps == 0 or step in (1, config.total_steps)
                if log_step:
                    last_metrics = _host_metrics(metrics)
                    last_metrics["learning_rate"] = float(schedule(step - 1))
                    # Throughput over the steps since the last log (the first includes
                    # compilation, so it is left out).
                    now = time.perf_counter()
                    if last_log is not None:
                        pairs = (step - last_log[0]) * config.global_batch_size
                        last_metrics["pairs_per_second"] = pairs / (now - last_log[1])
                    last_log = (step, now)
                    writer.write(step, last_metrics)
                stop = preemption.agreed(check_peers=log_step)
                if step % config.checkpoint_every_steps == 0 or step == config.total_steps or stop:
                    save(step, force=stop)
                if stop:
                    logging.warning("Stopped at step %d after SIGTERM; rerun to resume.", step)
                    break
        finally:
            batches.close()
            store.close()
            writer.close()
    return last_metrics
