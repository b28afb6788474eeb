"""The one place where devices and hosts are handled.

Training is data-parallel: a per-device program with a named axis
(:data:`AXIS_NAME`) and explicit collectives, mapped over every local device by
:func:`map_over_devices`. Everything else in the package is device-agnostic;
moving from ``jax.pmap`` to ``jax.shard_map`` means changing that one function.

Arrays handed to the mapped step carry a leading axis of size
``jax.local_device_count()``: :func:`shard_batch` splits a host batch that way,
:func:`replicate` copies a pytree onto every device and :func:`unreplicate`
takes one copy back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

AXIS_NAME = "devices"


def map_over_devices(
    fn: Callable[..., Any],
    *,
    donate_argnums: Sequence[int] = (),
) -> Callable[..., Any]:
    """Maps ``fn`` (a per-device program using ``AXIS_NAME``) over all local devices.

    Every positional argument and output has a leading device axis.
    """
    return jax.pmap(fn, axis_name=AXIS_NAME, donate_argnums=tuple(donate_argnums))


def shard_batch(batch: Any) -> Any:
    """Splits each ``(B, ...)`` host array into ``(local_devices, B / local_devices, ...)``."""
    devices = jax.local_device_count()

    def split(x: np.ndarray) -> np.ndarray:
        if x.shape[0] % devices:
            raise ValueError(
                f"host batch of {x.shape[0]} rows cannot be split evenly over {devices} devices"
            )
        return x.reshape(devices, x.shape[0] // devices, *x.shape[1:])

    return jax.tree.map(split, batch)


def replicate(tree: Any) -> Any:
    """Stacks one copy of each leaf per local device (leading axis), placed on the devices."""
    devices = jax.local_devices()
    # The same layout the mapped step returns its outputs in, so that feeding them back
    # does not trigger a second compilation.
    mesh = jax.sharding.Mesh(np.array(devices), (AXIS_NAME,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS_NAME))

    def put(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.device_put(np.broadcast_to(x, (len(devices), *x.shape)), sharding)

    return jax.tree.map(put, tree)


def unreplicate(tree: Any) -> Any:
    """Host (NumPy) copy of the first device's replica of each leaf."""
    return jax.tree.map(lambda x: np.asarray(x[0]), tree)


def initialize_distributed(
    coordinator_address: str = "",
    num_processes: int = 0,
    process_id: int = -1,
    local_device_ids: Sequence[int] | None = None,
) -> None:
    """Starts ``jax.distributed`` when the run spans several processes.

    With an explicit ``coordinator_address`` (and ``num_processes``/``process_id``)
    those are used (multi-node GPU, or several CPU processes on one machine).
    Otherwise, on a TPU pod slice or under a cluster scheduler JAX detects
    (SLURM, Open MPI, Kubernetes), it is initialised from the environment; a plain
    single machine stays single-process.
    """
    if coordinator_address:
        if num_processes <= 0 or process_id < 0:
            raise ValueError(
                "distributed.coordinator_address needs distributed.num_processes > 0 and "
                f"distributed.process_id >= 0, got {num_processes} and {process_id}"
            )
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=list(local_device_ids) if local_device_ids else None,
        )
    elif _in_multiprocess_environment():
        jax.distributed.initialize()
    else:
        return
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def _in_multiprocess_environment() -> bool:
    """True on TPU pod slices and under schedulers that ``jax.distributed`` auto-detects."""
    tpu_hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if "," in tpu_hosts:
        return True
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return True
    if int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return True
    return False


# XLA CPU flags the project sets (measured with bench/train_step.py and
# bench/dense_encode.py): hand the convolutions XLA deems worth it to YNNPACK.
XLA_CPU_FLAGS: tuple[str, ...] = ("--xla_cpu_experimental_ynn_fusion_type=INDIVIDUAL_CONVOLUTION",)
XLA_CPU_FLAGS_ENV = "PIMC_JAX_XLA_CPU_FLAGS"


def set_xla_cpu_flags() -> bool:
    """Adds :data:`XLA_CPU_FLAGS` to ``XLA_FLAGS`` if JAX's backends are not started yet.

    Called by ``launch.py`` and the ``bench/`` scripts before the first JAX computation
    (importing :mod:`pimc_jax` does not). A flag whose name ``XLA_FLAGS`` already
    mentions is left as the user set it, and ``PIMC_JAX_XLA_CPU_FLAGS=0`` turns the
    whole thing off. The flags change only how XLA's CPU backend runs convolutions
    (results agree to float rounding); other platforms ignore them.

    Returns:
      True if ``XLA_FLAGS`` was changed.
    """
    if os.environ.get(XLA_CPU_FLAGS_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return False
    current = os.environ.get("XLA_FLAGS", "")
    added = [f for f in XLA_CPU_FLAGS if f.split("=", 1)[0] not in current]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return bool(added)


def process_index() -> int:
    """This host's index among :func:`process_count` hosts (0 on one host)."""
    return jax.process_index()


def process_count() -> int:
    """How many hosts (processes) run the program (1 on one host)."""
    return jax.process_count()


def is_main_process() -> bool:
    """True on the process that logs and writes metrics (process 0)."""
    return process_index() == 0


def wait_for_all_processes(name: str) -> None:
    """A barrier named ``name`` over every process (nothing on one process)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def any_over_processes(flag: bool) -> bool:
    """True when ``flag`` is True on any process (``flag`` itself on one process)."""
    if process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.array(flag))))


def replicated_sharding() -> jax.sharding.NamedSharding:
    """A sharding that holds a whole array on every device of every process (checkpoints
    restore into it, whatever the device count they were written with)."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("all_devices",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def sum_over_processes(values: np.ndarray) -> np.ndarray:
    """``values`` summed over every process (itself on one process): host statistics that
    each process computed on its own shard of the data."""
    if process_count() == 1:
        return np.asarray(values)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(values))).sum(0)


def mean_over_processes(values: np.ndarray) -> np.ndarray:
    """``values`` averaged over every process (itself on one process)."""
    return sum_over_processes(values) / process_count()
