"""Data sources. Every SITS source yields :class:`~pimc_jax.data.patches.Patch` objects.

``config.data.name`` selects the source:

* ``synthetic`` (default): the embedded PASTIS-like generator, no download;
* ``pastis``: the official PASTIS layout under ``config.data.path`` (TFDS builder);
* ``patches``: a folder of the user's own SITS patches (:mod:`pimc_jax.data.user`).
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections

from pimc_jax.data.patches import Patch
from pimc_jax.data.sampling import shard_patches

PATCH_SOURCES = ("synthetic", "pastis", "patches")


def load_patches(
    data_config: ml_collections.ConfigDict,
    *,
    folds: Sequence[int] | None = None,
    process_index: int = 0,
    process_count: int = 1,
    lazy: bool = False,
) -> Sequence[Patch]:
    """Loads this process's shard of SITS patches named by ``data_config``.

    Args:
      data_config: the ``data`` block of a config (``name``, ``path``, ...).
      folds: keep only patches of these folds (PASTIS folds 1..5; synthetic
        patches get folds round robin); ``None`` keeps all, or ``data_config.folds``
        when that is set.
      process_index / process_count: each process keeps every
        ``process_count``-th patch starting at ``process_index``.
      lazy: where the source supports it (PASTIS), decode patches on access instead of
        holding them all in memory: for passes that visit each patch once or twice.
    """
    name = data_config.name
    if folds is None and data_config.get("folds"):
        folds = tuple(data_config.folds)
    if name == "synthetic":
        from pimc_jax.data.synthetic import synthetic_patches

        patches = synthetic_patches(
            data_config.num_patches,
            seed=data_config.synthetic_seed,
            size=data_config.patch_size,
            min_dates=data_config.synthetic_min_dates,
            max_dates=data_config.synthetic_max_dates,
        )
    elif name == "pastis":
        from pimc_jax.data.pastis import load_pastis_patches, prepare_pastis

        _require_path(data_config, name)
        if process_count > 1:
            # One process prepares the TFDS dataset; the others wait, then read their shard.
            from jax.experimental import multihost_utils

            if process_index == 0:
                prepare_pastis(data_config.path)
            multihost_utils.sync_global_devices("pimc_jax: PASTIS prepared")
        patches = load_pastis_patches(
            data_config.path,
            folds=tuple(folds or (1, 2, 3, 4, 5)),
            process_index=process_index,
            process_count=process_count,
            lazy=lazy,
        )
        folds, process_index, process_count = None, 0, 1  # already selected and sharded
    elif name == "patches":
        from pimc_jax.data.user import load_patch_folder

        _require_path(data_config, name)
        patches = load_patch_folder(data_config.path)
    else:
        raise ValueError(f"Unknown data.name {name!r} for patches; choose one of {PATCH_SOURCES}")
    if folds is not None:
        patches = [p for p in patches if p.fold in set(folds) or p.fold == 0]
    patches = shard_patches(patches, process_index, process_count)
    if not patches:
        raise ValueError(
            f"No patches for data.name={name!r} (folds={folds}) on process {process_index} of "
            f"{process_count}"
        )
    return patches


def _require_path(data_config: ml_collections.ConfigDict, name: str) -> None:
    if not data_config.get("path"):
        raise ValueError(f"data.name={name!r} needs --config.data.path=DIR")
