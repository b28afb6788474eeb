"""Orbax checkpoints of PIMC training, and :func:`load_params` for everything downstream.

A checkpoint is one Orbax step directory ``WORKDIR/checkpoints/<step>/`` with
three items:

* ``params``: the Flax variables, saved as replicated arrays (one copy, written
  once however many devices or hosts trained them);
* ``opt_state``: the optax state, likewise;
* ``meta``: JSON with the step, the :class:`~pimc_jax.models.ModelSpec` and the
  training config, so a checkpoint alone rebuilds the model.

Because nothing is stored per device, a checkpoint restores onto any number of
devices: arrays come back replicated over the devices of the restoring run.
Orbax writes each step to a temporary directory and renames it when complete, so a
run killed mid-save leaves the previous checkpoints intact. A workdir may also be a
``gs://`` URL (:mod:`pimc_jax.storage`); there Orbax writes each step in place and marks
it complete with a ``commit_success.txt`` file, and a step without it is not listed.

Integrity: ``meta`` also holds ``digests``, a SHA-256 per saved array (over its dtype,
shape and bytes, keyed by item and leaf path). Every read verifies them; a step whose
meta or arrays cannot be read, or whose arrays do not match their digests, is reported
in one ``logging.warning`` line and skipped for the newest good step (resume and
:func:`load_params` on a workdir). Bad steps are never deleted or modified; a training run
resuming past bad newest steps moves them aside to ``checkpoints/<step>.corrupt-<time>``
(:meth:`CheckpointStore.set_aside_bad_steps`) so that it can write those steps again. Older
checkpoints without digests still load, unverified.

Finiteness: a state whose params or optimizer state hold NaN or inf is never saved
(:class:`NonFiniteStateError`, naming the step and the first such leaf), and a saved step
holding one (written before this check existed) is refused on every read, as a corrupt
step is (:class:`NonFiniteCheckpointError`).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint import path as ocp_path

from pimc_jax import parallel, storage
from pimc_jax.checkpoint_faults import (
    CorruptCheckpointError,
    NonFiniteCheckpointError,
    NonFiniteStateError,
    first_nonfinite_leaf,
    leaf_key,
    quiet_failed_reads,
    set_aside_step,
)
from pimc_jax.models import ModelSpec, PIMCParams, init_params

CHECKPOINT_SUBDIR = "checkpoints"
_ITEMS = ("params", "opt_state", "meta")
_DIGESTS = "digests"
__all__ = [
    "CheckpointStore",
    "CorruptCheckpointError",
    "NonFiniteCheckpointError",
    "NonFiniteStateError",
    "array_digests",
    "checkpoint_steps",
    "first_nonfinite_leaf",
    "load_checkpoint",
    "load_params",
    "locate_checkpoint",
    "read_meta",
    "set_aside_step",
]


def _check_finite(step_dir: epath.Path, item: str, tree: Any) -> None:
    """Raises :class:`NonFiniteCheckpointError` if a restored item holds NaN or inf."""
    leaf = first_nonfinite_leaf(tree, item)
    if leaf is not None:
        raise NonFiniteCheckpointError(step_dir, leaf)


_REASON_LIMIT = 400  # characters of an error kept in a corrupt step's one-line reason


def array_digests(tree: Any) -> dict[str, str]:
    """SHA-256 (hex) of every array leaf of ``tree`` over its dtype, shape and bytes."""
    digests = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest = hashlib.sha256(f"{array.dtype.name}{array.shape}".encode())
        digest.update(array.tobytes())
        digests[leaf_key(path)] = digest.hexdigest()
    return digests


def _verify_digests(step_dir: epath.Path, item: str, tree: Any, meta: dict[str, Any]) -> None:
    """Raises :class:`CorruptCheckpointError` if ``tree`` differs from the digests in ``meta``.

    A checkpoint saved before digests existed has none and passes unverified.
    """
    expected = (meta.get(_DIGESTS) or {}).get(item)
    if expected is None:
        return
    actual = array_digests(tree)
    bad = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CorruptCheckpointError(step_dir, f"SHA-256 digest mismatch in {item}: {shown}")


def _public_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` without the digests (callers see step, spec and config as before)."""
    return {k: v for k, v in meta.items() if k != _DIGESTS}


def _to_global(tree: Any) -> Any:
    """Host NumPy leaves (identical on every process) → replicated global jax.Arrays."""
    sharding = parallel.replicated_sharding()

    def put(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def _to_host(tree: Any) -> Any:
    """Replicated global arrays → NumPy (this process's copy)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def _abstract(tree: Any) -> Any:
    sharding = parallel.replicated_sharding()
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree
    )


class CheckpointStore:
    """Periodic, keep-N, resumable checkpoints under ``WORKDIR/checkpoints``.

    All processes of a multi-host run call every method; Orbax coordinates the
    writes so each array is stored once.
    """

    def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int = 3):
        self.directory = storage.absolute(workdir) / CHECKPOINT_SUBDIR
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_names=_ITEMS,
        )

    def latest(self, *, set_aside: bool = False) -> tuple[int, dict[str, Any]] | None:
        """``(step, meta)`` of the newest step whose meta and arrays read back, match
        their digests and are finite.

        Reads every array of each step it checks. Bad steps are reported (one warning
        each) and skipped. ``None`` if there is no checkpoint at all.

        Args:
          set_aside: move the bad steps newer than the one returned to
            ``<step>.corrupt-<time>`` beside them (never deleted), so that a resumed run
            can save those steps again. Otherwise nothing is changed.

        Raises:
          ValueError: checkpoints exist but none of them is good.
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return None
        good = _first_good(
            self.directory, [self.directory / str(step) for step in steps], _verify_step
        )
        bad = [step for step in steps if step > good[0]]
        if set_aside and bad:
            if parallel.is_main_process():
                for step in bad:
                    set_aside_step(self.directory / str(step))
            parallel.wait_for_all_processes("pimc_jax_set_aside_bad_steps")
            self.manager.reload()
        return good

    def latest_step(self) -> int | None:
        """The step of :meth:`latest` (``None`` if there is no checkpoint at all)."""
        latest = self.latest()
        return None if latest is None else latest[0]

    def save(
        self,
        step: int,
        params: Any,
        opt_state: Any,
        spec: ModelSpec,
        config: dict[str, Any],
        *,
        force: bool = False,
    ) -> bool:
        """Starts an (asynchronous) save of host NumPy ``params``/``opt_state`` at ``step``.

        ``meta`` records the SHA-256 digest of every array. A step whose directory already
        exists (e.g. a corrupt one skipped at resume) is left alone and not saved.

        Raises:
          NonFiniteStateError: ``params`` or ``opt_state`` holds NaN or inf (nothing is
            written).
        """
        leaf = first_nonfinite_leaf(params, "params") or first_nonfinite_leaf(
            opt_state, "opt_state"
        )
        if leaf is not None:
            raise NonFiniteStateError(step, leaf)
        if int(step) in self.manager.all_steps():
            logging.warning(
                "Not saving step %d: %s already exists (left untouched).",
                step,
                self.directory / str(step),
            )
            return False
        meta = {
            "step": int(step),
            "spec": spec.to_dict(),
            "config": config,
            _DIGESTS: {"params": array_digests(params), "opt_state": array_digests(opt_state)},
        }
        return self.manager.save(
            int(step),
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(_to_global(params)),
                opt_state=ocp.args.StandardSave(_to_global(opt_state)),
                meta=ocp.args.JsonSave(meta),
            ),
            force=force,
        )

    def restore(self, step: int, params_like: Any, opt_state_like: Any) -> tuple[Any, Any, dict]:
        """Restores ``(params, opt_state, meta)`` of ``step`` as host NumPy trees.

        ``params_like``/``opt_state_like`` give the structure, shapes and dtypes
        (e.g. a fresh state); the device layout of the saving run does not matter.

        Raises:
          CorruptCheckpointError: the step cannot be read or fails its digests.
        """
        step_dir = self.directory / str(step)
        restored = _restore(
            self.manager,
            step_dir,
            params=ocp.args.StandardRestore(_abstract(params_like)),
            opt_state=ocp.args.StandardRestore(_abstract(opt_state_like)),
            meta=ocp.args.JsonRestore(),
        )
        params, opt_state = _to_host(restored.params), _to_host(restored.opt_state)
        meta = _checked_meta(step_dir, restored.meta)
        _verify_digests(step_dir, "params", params, meta)
        _verify_digests(step_dir, "opt_state", opt_state, meta)
        _check_finite(step_dir, "params", params)
        _check_finite(step_dir, "opt_state", opt_state)
        return params, opt_state, _public_meta(meta)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def checkpoint_steps(path: str | os.PathLike) -> list[int]:
    """Steps of the completed checkpoints under a workdir or its checkpoints directory.

    Orbax writes a step to a temporary directory and renames it to ``<step>`` when
    complete (on ``gs://``: writes ``<step>`` in place, then its ``commit_success.txt``),
    so only finished checkpoints are listed. A missing directory gives ``[]``.
    """
    path = storage.as_path(path)
    storage.refresh(path)  # a remote listing may be cached from an earlier call
    if (path / CHECKPOINT_SUBDIR).is_dir():
        path = path / CHECKPOINT_SUBDIR
    if not path.is_dir():
        return []
    remote = storage.is_remote(path)
    return sorted(
        int(p.name)
        for p in path.iterdir()
        if p.name.isdigit() and p.is_dir() and (not remote or ocp_path.step.is_path_finalized(p))
    )


def _candidates(path: str | os.PathLike, step: int | None = None) -> tuple[list[epath.Path], bool]:
    """The step directories ``path`` (and ``step``) may mean, newest first.

    Returns ``(step_dirs, explicit)``: ``explicit`` when ``path`` is itself a
    ``checkpoints/<step>`` directory or ``step`` was given (one candidate, no fallback).
    """
    path = storage.absolute(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint or workdir at {path}")
    if path.name.isdigit() and (
        path.parent.name == CHECKPOINT_SUBDIR or (path / "params").is_dir()
    ):
        if step is not None and step != int(path.name):
            raise FileNotFoundError(f"{path} is the checkpoint of step {path.name}, not {step}")
        return [path], True
    directory = path / CHECKPOINT_SUBDIR if (path / CHECKPOINT_SUBDIR).is_dir() else path
    steps = checkpoint_steps(directory)
    if not steps:
        raise FileNotFoundError(
            f"{path} holds no checkpoint (expected a workdir with '{CHECKPOINT_SUBDIR}/', a "
            "checkpoints directory, or a '<step>' directory)"
        )
    if step is not None:
        if step not in steps:
            raise FileNotFoundError(f"No checkpoint of step {step} under {path}")
        return [directory / str(step)], True
    return [directory / str(s) for s in reversed(steps)], False


def locate_checkpoint(path: str | os.PathLike, step: int | None = None) -> epath.Path:
    """The ``checkpoints/<step>`` directory a path names (no integrity check).

    Args:
      path: a pre-training workdir, its ``checkpoints`` directory, or one
        ``checkpoints/<step>`` directory.
      step: which step under a workdir or checkpoints directory; default the latest
        (whether or not it is intact: :func:`load_checkpoint` of a workdir skips
        corrupt steps, this does not).
    """
    return _candidates(path, step)[0][0]


def _restore(manager: ocp.CheckpointManager, step_dir: epath.Path, **items: Any) -> Any:
    """``manager.restore`` of the named items of one step; any failure names the path."""
    quiet_failed_reads()  # before: a failed read's aftermath can come before the except
    try:
        return manager.restore(int(step_dir.name), args=ocp.args.Composite(**items))
    except Exception as error:  # Orbax raises many types; name the path either way.
        raise CorruptCheckpointError(step_dir, storage.one_line(error, _REASON_LIMIT)) from error


def _restore_items(step_dir: epath.Path, **items: Any) -> Any:
    """Restores the named items of one step directory with a read-only manager."""
    manager = ocp.CheckpointManager(step_dir.parent, item_names=_ITEMS)
    try:
        return _restore(manager, step_dir, **items)
    finally:
        manager.close()


def _checked_meta(step_dir: epath.Path, meta: Any) -> dict[str, Any]:
    """``meta`` as a dict, after checking it belongs to ``step_dir`` and holds a valid spec."""
    try:
        meta = dict(meta)
        if int(meta["step"]) != int(step_dir.name):
            raise ValueError(f"meta says step {meta['step']}")
        ModelSpec.from_dict(meta["spec"])
        if not isinstance(meta.get(_DIGESTS) or {}, dict):
            raise ValueError("meta digests are not a mapping")
    except Exception as error:
        reason = f"bad meta: {storage.one_line(error, _REASON_LIMIT)}"
        raise CorruptCheckpointError(step_dir, reason) from error
    return meta


def _read_step_meta(step_dir: epath.Path) -> dict[str, Any]:
    """The checked meta (digests included) of one step directory."""
    return _checked_meta(step_dir, _restore_items(step_dir, meta=ocp.args.JsonRestore()).meta)


def _as_corrupt(step_dir: epath.Path, error: Exception) -> CorruptCheckpointError:
    """Any failure while reading ``step_dir`` as a :class:`CorruptCheckpointError`."""
    if isinstance(error, CorruptCheckpointError):
        return error
    return CorruptCheckpointError(step_dir, storage.one_line(error, _REASON_LIMIT))


def _verify_step(step_dir: epath.Path) -> dict[str, Any]:
    """Reads meta and every array of a step (shapes from its own metadata) and checks digests.

    Returns the public meta. Raises :class:`CorruptCheckpointError` otherwise.
    """
    try:
        meta = _read_step_meta(step_dir)
        handler = ocp.StandardCheckpointHandler()
        items = {}
        try:
            for item in ("params", "opt_state"):
                saved = handler.metadata(step_dir / item)
                saved = getattr(saved, "tree", saved)
                items[item] = ocp.args.StandardRestore(_abstract(saved))
        finally:
            handler.close()
        restored = _restore_items(step_dir, **items)
        for item in items:
            host = _to_host(restored[item])
            _verify_digests(step_dir, item, host, meta)
            _check_finite(step_dir, item, host)
    except Exception as error:
        raise _as_corrupt(step_dir, error) from error
    return _public_meta(meta)


def _load_step(step_dir: epath.Path) -> tuple[PIMCParams, dict[str, Any], epath.Path]:
    """Verified encoder parameters and meta of one step (see :func:`load_checkpoint`)."""
    try:
        meta = _read_step_meta(step_dir)
        spec = ModelSpec.from_dict(meta["spec"])
        params_like = jax.eval_shape(lambda: init_params(spec, 0).variables)
        restored = _restore_items(step_dir, params=ocp.args.StandardRestore(_abstract(params_like)))
        host = _to_host(restored.params)
        _verify_digests(step_dir, "params", host, meta)
        _check_finite(step_dir, "params", host)
    except Exception as error:
        raise _as_corrupt(step_dir, error) from error
    params = PIMCParams(variables=jax.device_put(host), spec=spec)
    return params, _public_meta(meta), step_dir


def _first_good(directory: epath.Path, step_dirs: list[epath.Path], read: Any) -> tuple[Any, Any]:
    """``(step, read(step_dir))`` of the first of ``step_dirs`` (newest first) that reads.

    Each bad step is logged in one warning line and skipped; if none is good, one
    ``ValueError`` names ``directory`` and every step's reason.
    """
    reasons = []
    for step_dir in step_dirs:
        try:
            result = read(step_dir)
        except CorruptCheckpointError as error:
            logging.warning("Skipping corrupt checkpoint %s: %s", step_dir, error.reason)
            reasons.append(f"step {step_dir.name}: {error.reason}")
            continue
        if reasons:
            logging.warning("Using checkpoint %s instead.", step_dir)
        return int(step_dir.name), result
    raise ValueError(
        f"No checkpoint under {directory} could be restored: every step is incomplete or "
        f"corrupt and could not be restored ({'; '.join(reasons)}); they were left untouched"
    )


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` JSON (step, spec, config) of the checkpoint ``path`` resolves to.

    For a workdir or checkpoints directory this is the step :func:`load_params` uses (the
    newest intact one).
    """
    step_dirs, explicit = _candidates(path)
    if explicit:
        return _public_meta(_read_step_meta(step_dirs[0]))
    return load_checkpoint(path)[1]


def load_checkpoint(
    path: str | os.PathLike,
) -> tuple[PIMCParams, dict[str, Any], epath.Path]:
    """Encoder parameters, ``meta`` and the step directory of a checkpoint, in one read.

    Args:
      path: as for :func:`load_params`.

    Returns:
      ``(params, meta, step_dir)``: :class:`~pimc_jax.encode.PIMCParams` (variables on
      the default device, so repeated ``encode`` calls do not re-upload them), the meta
      JSON (``step``, ``spec``, ``config``) and the ``checkpoints/<step>`` directory.

    Raises:
      CorruptCheckpointError: ``path`` is one step directory and it is incomplete or
        corrupt (no other step is substituted).
      ValueError: no step under a workdir or checkpoints directory is intact.
    """
    step_dirs, explicit = _candidates(path)
    if explicit:
        return _load_step(step_dirs[0])
    return _first_good(step_dirs[0].parent, step_dirs, _load_step)[1]


def load_params(path: str | os.PathLike) -> PIMCParams:
    """Restores the encoders' parameters for :func:`pimc_jax.encode`.

    Args:
      path: a pre-training workdir (its newest intact checkpoint is used; corrupt newer
        steps are skipped with a warning), its ``checkpoints`` directory, or one
        ``checkpoints/<step>`` directory (which must itself be intact); a local path or a
        ``gs://`` URL.

    Returns:
      :class:`~pimc_jax.encode.PIMCParams`: the variables on the default device and the
      saved spec.
    """
    return load_checkpoint(path)[0]
