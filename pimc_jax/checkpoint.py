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
run killed mid-save leaves the previous checkpoints intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from pimc_jax.models import ModelSpec, PIMCParams, init_params

CHECKPOINT_SUBDIR = "checkpoints"


def _replicated_sharding() -> jax.sharding.NamedSharding:
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("all_devices",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _to_global(tree: Any) -> Any:
    """Host NumPy leaves (identical on every process) → replicated global jax.Arrays."""
    sharding = _replicated_sharding()

    def put(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def _to_host(tree: Any) -> Any:
    """Replicated global arrays → NumPy (this process's copy)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def _abstract(tree: Any) -> Any:
    sharding = _replicated_sharding()
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree
    )


class CheckpointStore:
    """Periodic, keep-N, resumable checkpoints under ``WORKDIR/checkpoints``.

    All processes of a multi-host run call every method; Orbax coordinates the
    writes so each array is stored once.
    """

    def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int = 3):
        self.directory = Path(workdir).absolute() / CHECKPOINT_SUBDIR
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_names=("params", "opt_state", "meta"),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

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
        """Starts an (asynchronous) save of host NumPy ``params``/``opt_state`` at ``step``."""
        meta = {"step": int(step), "spec": spec.to_dict(), "config": config}
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
        """
        restored = _restore(
            self.manager,
            self.directory / str(step),
            params=ocp.args.StandardRestore(_abstract(params_like)),
            opt_state=ocp.args.StandardRestore(_abstract(opt_state_like)),
            meta=ocp.args.JsonRestore(),
        )
        return _to_host(restored.params), _to_host(restored.opt_state), dict(restored.meta)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def checkpoint_steps(path: str | os.PathLike) -> list[int]:
    """Steps of the completed checkpoints under a workdir or its checkpoints directory.

    Orbax writes a step to a temporary directory and renames it to ``<step>`` when
    complete, so only finished checkpoints are listed. A missing directory gives ``[]``.
    """
    path = Path(path)
    if (path / CHECKPOINT_SUBDIR).is_dir():
        path = path / CHECKPOINT_SUBDIR
    if not path.is_dir():
        return []
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit() and p.is_dir())


def locate_checkpoint(path: str | os.PathLike, step: int | None = None) -> Path:
    """The ``checkpoints/<step>`` directory a path names.

    Args:
      path: a pre-training workdir, its ``checkpoints`` directory, or one
        ``checkpoints/<step>`` directory.
      step: which step under a workdir or checkpoints directory; default the latest.
    """
    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint or workdir at {path}")
    if (path / "params").is_dir() and path.name.isdigit():
        if step is not None and step != int(path.name):
            raise FileNotFoundError(f"{path} is the checkpoint of step {path.name}, not {step}")
        return path
    directory = path / CHECKPOINT_SUBDIR if (path / CHECKPOINT_SUBDIR).is_dir() else path
    steps = checkpoint_steps(directory)
    if not steps:
        raise FileNotFoundError(
            f"{path} holds no checkpoint (expected a workdir with '{CHECKPOINT_SUBDIR}/', a "
            "checkpoints directory, or a '<step>' directory)"
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise FileNotFoundError(f"No checkpoint of step {step} under {path}")
    return directory / str(step)


def _restore(manager: ocp.CheckpointManager, step_dir: Path, **items: Any) -> Any:
    """``manager.restore`` of the named items of one step; any failure names the path."""
    try:
        return manager.restore(int(step_dir.name), args=ocp.args.Composite(**items))
    except Exception as error:  # Orbax raises many types; name the path either way.
        raise ValueError(
            f"Checkpoint {step_dir} could not be restored ({type(error).__name__}: {error}). "
            "It may be incomplete or corrupt; it was left untouched. Move it aside to "
            "resume from an earlier step."
        ) from error


def _restore_items(step_dir: Path, **items: Any) -> Any:
    """Restores the named items of one step directory with a read-only manager."""
    manager = ocp.CheckpointManager(step_dir.parent, item_names=("params", "opt_state", "meta"))
    try:
        return _restore(manager, step_dir, **items)
    finally:
        manager.close()


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` JSON (step, spec, config) of the checkpoint ``path`` resolves to."""
    return dict(_restore_items(locate_checkpoint(path), meta=ocp.args.JsonRestore()).meta)


def load_checkpoint(path: str | os.PathLike) -> tuple[PIMCParams, dict[str, Any], Path]:
    """Encoder parameters, ``meta`` and the step directory of a checkpoint, in one read.

    Args:
      path: as for :func:`load_params`.

    Returns:
      ``(params, meta, step_dir)``: :class:`~pimc_jax.encode.PIMCParams` (variables on
      the default device, so repeated ``encode`` calls do not re-upload them), the meta
      JSON (``step``, ``spec``, ``config``) and the ``checkpoints/<step>`` directory.
    """
    step_dir = locate_checkpoint(path)
    meta = read_meta(step_dir)
    spec = ModelSpec.from_dict(meta["spec"])
    params_like = jax.eval_shape(lambda: init_params(spec, 0).variables)
    restored = _restore_items(step_dir, params=ocp.args.StandardRestore(_abstract(params_like)))
    params = PIMCParams(variables=jax.device_put(_to_host(restored.params)), spec=spec)
    return params, meta, step_dir


def load_params(path: str | os.PathLike) -> PIMCParams:
    """Restores the encoders' parameters for :func:`pimc_jax.encode`.

    Args:
      path: a pre-training workdir (its latest checkpoint is used), its
        ``checkpoints`` directory, or one ``checkpoints/<step>`` directory.

    Returns:
      :class:`~pimc_jax.encode.PIMCParams`: the variables on the default device and the
      saved spec.
    """
    return load_checkpoint(path)[0]
