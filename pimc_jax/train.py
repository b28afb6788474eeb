"""The pre-training loop: data, the parallel step, checkpoints and metrics.

:func:`pretrain` is what ``python launch.py --config=configs/pretrain.py``
runs. Resume order is explicit: the latest checkpoint in ``WORKDIR/checkpoints``,
else fresh parameters from ``config.seed``.

Resume policy (:func:`check_resume`): a resume may change only the keys that leave the
trajectory alone (:data:`RESUME_FREE_KEYS`: logging, checkpointing, input threads,
``distributed``) and ``total_steps`` (logged; the learning-rate schedule is rebuilt for the
new total). Any other changed key (seed, batch size, ``optimizer.*``, ``data.*``,
``augment``, ``model.*``) is refused with one line naming it, unless
``config.resume_allow_changes=True``. ``config.json`` keeps the first run's config and
each resume writes ``config.<step>.json`` beside it (``<step>``: the step it resumed at).

Faults: one run per workdir (:mod:`pimc_jax.workdir_lock`); bad newest checkpoints are moved
aside on resume (:meth:`~pimc_jax.checkpoint.CheckpointStore.latest`); the run stops at the
first non-finite loss (:class:`TrainingDivergedError`) and never saves a non-finite state;
SIGTERM and Ctrl-C save the step reached and stop (Ctrl-C then raises
:class:`TrainingInterrupted`, which ``launch.py`` turns into exit status 130).

The workdir may be a local path or a ``gs://`` URL (:mod:`pimc_jax.storage`): checkpoints,
configs, ``metrics.jsonl`` and TensorBoard events all go there.

Determinism: the batch of step ``i`` depends only on ``(config.seed, process, i)``
and the step's randomness only on ``(config.seed, i, global row)``, so a run
resumed from a checkpoint continues exactly as if it had never stopped, and the
same global batch gives the same losses on any number of devices.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath

from pimc_jax import parallel, storage
from pimc_jax.checkpoint import CheckpointStore
from pimc_jax.compat import ADDED_CONFIG_KEYS
from pimc_jax.config_checks import (
    check_crop_size,
    check_schedule,
    config_views,
    validate_pretrain_config,
)
from pimc_jax.data import load_patches
from pimc_jax.data.pairs import PairSampler
from pimc_jax.data.patches import Patch
from pimc_jax.data.pipeline import PairBatches
from pimc_jax.data.statistics import image_statistics, s1_spec_facts
from pimc_jax.indices import resolve_image_bands
from pimc_jax.metrics import MetricWriter
from pimc_jax.models import ModelSpec
from pimc_jax.optim import learning_rate_schedule, make_optimizer
from pimc_jax.step import TrainState, create_train_state, make_parallel_step
from pimc_jax.workdir_lock import WorkdirLock


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
        config.data, process_index=parallel.process_index(), process_count=parallel.process_count()
    )
    views = config_views(config)
    if "s2_rp" in views:
        single = [p.patch_id for p in patches if p.num_dates < 2]
        if len(single) == len(patches):
            raise ValueError(
                f"every patch of config.data.path={config.data.get('path', '')!r} holds one "
                "date: a recurrence plot needs a time series; give patches with at least 2 "
                "dates (6 or more for a useful plot)"
            )
        if single:
            logging.warning(
                "%d of %d patches hold one date (e.g. %s): their plots are constant",
                len(single),
                len(patches),
                single[0],
            )
    image_bands = resolve_image_bands(config.data.image_bands, patches[0].band_names)
    image_mean, image_std = image_statistics(patches, image_bands)
    sampler = PairSampler(
        patches,
        pixels_per_patch=config.data.pixels_per_patch,
        crop_size=config.data.crop_size,
        image_bands=image_bands,
        max_dates=config.data.max_dates,
        sampling=config.data.sampling,
        image_date=config.data.image_date,
        seed=config.seed,
        views=views,
        s1_image_bands=tuple(config.data.get("s1_image_bands", ("VV", "VH", "VV/VH"))),
        s1_max_gap_days=config.data.get("s1_max_gap_days", 6),
        s1_multilook=config.data.get("s1_multilook", 1),
    )
    spec = ModelSpec.from_config(
        config,
        band_names=patches[0].band_names,
        image_mean=image_mean,
        image_std=image_std,
        series_length=float(np.median([min(p.dates.size, config.data.max_dates) for p in patches])),
        **s1_spec_facts(sampler.patches, views, sampler.s1_image_bands),
    )
    return PretrainingSetup(patches, spec, sampler, make_optimizer(config))


class _Preemption:
    """Turns SIGTERM and SIGINT (Ctrl-C) into a flag the loop checks, so it can checkpoint
    and exit cleanly. A second Ctrl-C stops at once (``KeyboardInterrupt``)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self.signal: str | None = None  # the name of the first signal received
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Preemption:
        try:
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # Not the main thread: leave signals alone.
            pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        logging.warning("%s received: saving a checkpoint and stopping.", name)
        self.requested = True
        self.signal = self.signal or name

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def agreed(self, check_peers: bool) -> bool:
        """True once any process was asked to stop.

        Alone, the local flag is enough. With several processes they must stop at the
        same step, which takes a collective: it runs only when ``check_peers`` (the
        loop passes logging steps) so it stays off the per-step path.
        """
        if parallel.process_count() == 1:
            return self.requested
        if not check_peers:
            return False
        return parallel.any_over_processes(self.requested)


# Keys a resume may change freely: they do not alter the run's trajectory.
RESUME_FREE_KEYS: frozenset[str] = frozenset(
    {
        "task",
        "total_steps",  # allowed, and logged (the schedule is rebuilt for the new total)
        "log_every_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
        "resume_allow_changes",
        "data.num_threads",
        "data.prefetch",
    }
)
_RESUME_FREE_PREFIXES: tuple[str, ...] = ("distributed.",)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``, with tuples as lists (as in JSON)."""
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: json.loads(json.dumps(tree))}


_UNSET = "(unset)"


def check_resume(
    config: ml_collections.ConfigDict,
    saved: dict[str, Any],
    saved_step: int,
    where: str | os.PathLike,
) -> None:
    """Refuses a resume whose config changes the run's trajectory (module docstring).

    Args:
      config: this run's config.
      saved: the config the latest checkpoint was trained with (a plain dict).
      saved_step: that checkpoint's step.
      where: the workdir, for messages.

    Raises:
      ValueError: a changed trajectory key without ``config.resume_allow_changes=True``.
    """
    old, new = _flatten(saved), _flatten(config.to_dict())
    old = {**{k: v for k, v in ADDED_CONFIG_KEYS.items() if k in new}, **old}
    changed = {
        key: (old.get(key, _UNSET), new.get(key, _UNSET))
        for key in sorted(set(old) | set(new))
        if old.get(key, _UNSET) != new.get(key, _UNSET)
        and key not in RESUME_FREE_KEYS
        and not key.startswith(_RESUME_FREE_PREFIXES)
    }
    if changed:
        listed = "; ".join(f"{key}: {a!r} → {b!r}" for key, (a, b) in changed.items())
        if not config.get("resume_allow_changes", False):
            raise ValueError(
                f"cannot resume {where} at step {saved_step}: it was trained with a different "
                f"model or config ({listed}); pass --config.resume_allow_changes=True to "
                f"resume anyway, or use a new --workdir"
            )
        logging.warning("Resuming with changed config (resume_allow_changes=True): %s", listed)
    old_total = old.get("total_steps", _UNSET)
    if old_total != config.total_steps and config.total_steps > saved_step:
        logging.warning(
            "Resuming at step %d with total_steps %s → %d: the learning-rate schedule is "
            "rebuilt for the new total.",
            saved_step,
            old_total,
            config.total_steps,
        )


def _saved_config(meta: dict[str, Any], workdir: epath.Path) -> dict[str, Any] | None:
    """The config a checkpoint was trained with (its ``meta``, else ``config.json``)."""
    saved = meta.get("config")
    if saved is None and (workdir / "config.json").is_file():
        saved = json.loads((workdir / "config.json").read_text())
    return saved


def _check_batch_size(config: ml_collections.ConfigDict) -> int:
    """Per-process batch size; the global batch must split over processes and devices."""
    devices, processes = jax.device_count(), parallel.process_count()
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


class TrainingDivergedError(ValueError):
    """The loss became NaN or inf: the run stops there (its message is one line)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped the run after it saved its state (``launch.py`` exits 130)."""


def _host_metrics(metrics: Any) -> dict[str, float]:
    """First device's copy of the (replicated) step metrics, in display order."""
    return {k: float(np.asarray(metrics[k][0])) for k in _METRIC_ORDER}


def _first_device_loss(metrics: Any) -> float:
    """The step's loss (identical on every device), read from the first device's copy."""
    return float(np.asarray(metrics["loss"].addressable_data(0)).reshape(-1)[0])


def _diverged(
    step: int,
    loss: float,
    config: ml_collections.ConfigDict,
    last_saved: int | None,
    directory: epath.Path,
) -> TrainingDivergedError:
    """The one-line error for a non-finite loss at ``step``."""
    saved = (
        f"the last checkpoint is step {last_saved} in {directory}"
        if last_saved is not None
        else "no checkpoint was saved"
    )
    return TrainingDivergedError(
        f"the loss is {loss} at step {step}: the training diverged and stopped there without "
        f"saving ({saved}); lower --config.optimizer.learning_rate (now "
        f"{config.optimizer.learning_rate}) and rerun"
    )


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Pre-trains PIMC as ``config`` says, writing everything to ``workdir``.

    Args:
      config: a pre-training config (``configs/pretrain*.py``).
      workdir: a local directory or a ``gs://`` URL (:mod:`pimc_jax.storage`).

    Returns:
      The metrics of the last logged step (empty if no step ran).
    """
    validate_pretrain_config(config)
    _check_batch_size(config)
    # One run per workdir (pimc_jax.workdir_lock): a second one is refused in one line.
    with WorkdirLock(workdir, enabled=parallel.is_main_process()):
        return _pretrain(config, workdir)


def _pretrain(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """:func:`pretrain` once the config is checked and the workdir locked."""
    workdir_path = storage.as_path(workdir)
    is_main = parallel.is_main_process()
    per_host_batch = _check_batch_size(config)

    store = CheckpointStore(workdir_path, max_to_keep=config.keep_checkpoints)
    try:
        newest = store.latest(set_aside=True)
        latest, saved_meta = newest if newest is not None else (None, {})
        # The resume policy first, before any data is loaded (module docstring).
        if latest is not None:
            saved_config = _saved_config(saved_meta, workdir_path)
            if saved_config is not None:
                check_resume(config, saved_config, latest, workdir_path)
            if config.total_steps <= latest:
                logging.warning(
                    "Nothing to do: %s already holds step %d and total_steps=%d; raise "
                    "--config.total_steps to train further.",
                    store.directory,
                    latest,
                    config.total_steps,
                )
                store.close()
                return {}
        check_schedule(config)
        setup = build_pretraining(config)
        check_crop_size(
            config,
            min(min(p.height, p.width) for p in setup.patches),
            "smallest patch side",
        )
    except BaseException:
        store.close()
        raise
    spec, optimizer = setup.spec, setup.optimizer
    schedule = learning_rate_schedule(config)

    init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
    state = jax.device_get(create_train_state(spec, optimizer, init_rng))
    start_step = 0
    if latest is not None:
        # Compare specs before touching arrays, so a changed model gets a clear message.
        saved_spec = ModelSpec.from_dict(saved_meta["spec"])
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
        # config.json: the first run's config; each resume's goes beside it.
        workdir_path.mkdir(parents=True, exist_ok=True)
        first = workdir_path / "config.json"
        name = f"config.{start_step}.json" if start_step and first.exists() else "config.json"
        storage.write_text_atomic(
            workdir_path / name, json.dumps(config.to_dict(), indent=2) + "\n"
        )

    batches = PairBatches(
        setup.sampler,
        batch_size=per_host_batch,
        seed=config.seed * 1_000_003 + parallel.process_index(),
        start_step=start_step,
        end_step=config.total_steps,
        num_threads=config.data.num_threads,
        prefetch=config.data.prefetch,
    )
    parallel_step = make_parallel_step(spec, optimizer, augment=config.augment)
    replicated_state = parallel.replicate(state)
    replicated_rng = parallel.replicate(jax.random.key_data(step_rng))
    writer = MetricWriter(
        workdir_path,
        total_steps=config.total_steps,
        enabled=is_main,
        # Also a fresh start (step 0): a run killed before its first checkpoint left rows
        # of the steps about to be trained again.
        resumed_at=start_step,
    )
    if is_main:
        logging.info(
            "Pre-training %d → %d steps, global batch %d over %d devices (%d processes)",
            start_step,
            config.total_steps,
            config.global_batch_size,
            jax.device_count(),
            parallel.process_count(),
        )

    last_saved = latest

    def save(step: int, force: bool = False) -> None:
        nonlocal last_saved
        host = parallel.unreplicate(replicated_state)
        store.save(step, host.params, host.opt_state, spec, config.to_dict(), force=force)
        last_saved = step

    def check_loss(step: int, step_metrics: Any) -> None:
        loss = _first_device_loss(step_metrics)
        if not np.isfinite(loss):
            raise _diverged(step, loss, config, last_saved, store.directory)

    last_metrics: dict[str, float] = {}
    last_log: tuple[int, float] | None = None
    # The previous step's metrics: its loss is checked once the next step is queued, so
    # the device never waits for the host, yet no step trains on a non-finite loss's
    # update without the run stopping right after.
    previous: tuple[int, Any] | None = None
    # Whatever happens in the loop, let in-flight checkpoint writes finish.
    with _Preemption() as preemption:
        try:
            for step in range(start_step + 1, config.total_steps + 1):
                batch = next(batches)
                replicated_state, metrics = parallel_step(
                    replicated_state, parallel.shard_batch(batch), replicated_rng
                )
                if previous is not None:
                    check_loss(*previous)
                previous = (step, metrics)
                log_step = step % config.log_every_steps == 0 or step in (1, config.total_steps)
                stop = preemption.agreed(check_peers=log_step)
                save_step = (
                    step % config.checkpoint_every_steps == 0 or step == config.total_steps or stop
                )
                if log_step or save_step:
                    check_loss(step, metrics)  # these steps wait for the device anyway
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
                if save_step:
                    save(step, force=stop)
                if stop:
                    logging.warning(
                        "Stopped at step %d after %s; rerun to resume.", step, preemption.signal
                    )
                    break
        finally:
            batches.close()
            store.close()
            writer.close()
    if preemption.signal == "SIGINT":
        raise TrainingInterrupted(f"interrupted at step {last_saved}, saved; rerun to resume")
    return last_metrics
