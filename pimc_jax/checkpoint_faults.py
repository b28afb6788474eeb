"""What can be wrong with a checkpoint step, and setting a bad step aside.

:class:`CorruptCheckpointError` (unreadable, incomplete or failing its digests),
:class:`NonFiniteCheckpointError` (saved with NaN or inf: a diverged run),
:class:`NonFiniteStateError` (a state refused before it is saved), and
:func:`set_aside_step`, which renames a bad step to ``<step>.corrupt-<time>`` (never
deleting it), and :func:`quiet_failed_reads`, which keeps a failed read from printing
tracebacks after the step was named. :mod:`pimc_jax.checkpoint` uses them and re-exports
the errors.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from etils import epath


class CorruptCheckpointError(ValueError):
    """A checkpoint step directory that is incomplete or corrupt (its message is one line)."""

    def __init__(self, step_dir: os.PathLike, reason: str):
        self.step_dir = step_dir
        self.reason = reason
        super().__init__(
            f"Checkpoint {step_dir} could not be restored ({reason}); it may be incomplete "
            "or corrupt and was left untouched"
        )


class NonFiniteCheckpointError(CorruptCheckpointError):
    """A saved step whose arrays hold NaN or inf (a diverged run); its message is one line."""

    def __init__(self, step_dir: os.PathLike, leaf: str):
        self.step_dir = step_dir
        self.leaf = leaf
        self.reason = f"non-finite values (NaN or inf) in {leaf}: the run had diverged"
        ValueError.__init__(
            self,
            f"Checkpoint {step_dir} holds non-finite values (NaN or inf) in {leaf}: the run "
            "had diverged when it was saved; use an earlier step, or retrain with a lower "
            "--config.optimizer.learning_rate",
        )


class NonFiniteStateError(ValueError):
    """A training state with NaN or inf in its params or optimizer state (not saved)."""

    def __init__(self, step: int, leaf: str):
        self.step = int(step)
        self.leaf = leaf
        super().__init__(
            f"step {step} was not saved: {leaf} holds non-finite values (NaN or inf), the "
            "training diverged; lower --config.optimizer.learning_rate (or set "
            "--config.optimizer.grad_clip_norm) and rerun, which resumes from the last good "
            "checkpoint"
        )


def first_nonfinite_leaf(tree: Any, prefix: str = "") -> str | None:
    """``prefix/<leaf path>`` of the first floating-point leaf of ``tree`` holding NaN or
    inf, else ``None`` (integer and boolean leaves are always finite)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        array = np.asarray(leaf)
        if not jax.numpy.issubdtype(array.dtype, jax.numpy.inexact):
            continue
        if array.dtype.kind not in "fc":  # bfloat16 and other ml_dtypes floats
            array = array.astype(np.float32)
        if not np.isfinite(array).all():
            return f"{prefix}/{leaf_key(path)}" if prefix else leaf_key(path)
    return None


def leaf_key(path: tuple[Any, ...]) -> str:
    """A tree path as ``a/0/b``, the same for a namedtuple field and the dict Orbax restores."""
    parts = []
    for entry in path:
        for attribute in ("key", "idx", "name"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def set_aside_step(step_dir: epath.Path) -> epath.Path:
    """Renames a bad step directory to ``<step>.corrupt-<UTC time>`` (never deleted); one
    warning line names both paths. Returns the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = step_dir.parent / f"{step_dir.name}.corrupt-{stamp}"
    suffix = 1
    while target.exists():
        target = step_dir.parent / f"{step_dir.name}.corrupt-{stamp}.{suffix}"
        suffix += 1
    step_dir.rename(target)
    logging.warning(
        "Moved bad checkpoint %s aside to %s (kept, not deleted) so step %s can be saved again.",
        step_dir,
        target,
        step_dir.name,
    )
    return target


# What Orbax's remaining reads of a step that failed to restore report, from TensorStore's
# threads, once the restore's event loop is closed.
_FAILED_READ_AFTERMATH: tuple[str, ...] = (
    "Event loop is closed",
    "Encountered error while reading array",
)


def quiet_failed_reads() -> None:
    """Drops the unraisable errors a failed restore leaves behind (idempotent).

    When one array of a step cannot be read, Orbax's restore raises (and the step is named
    corrupt, one line), but its other reads still complete in TensorStore's threads and
    report to the restore's closed event loop: Python prints each as an "Exception ignored"
    traceback, dozens of lines after the one-line message. This wraps
    :data:`sys.unraisablehook` to drop those two messages and pass everything else on.
    """
    previous = sys.unraisablehook
    if getattr(previous, "pimc_quiet_failed_reads", False):
        return

    def hook(unraisable: Any) -> None:
        message = str(unraisable.exc_value)
        if any(text in message for text in _FAILED_READ_AFTERMATH):
            return
        previous(unraisable)

    hook.pimc_quiet_failed_reads = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook
