"""Data sources. Every SITS source yields :class:`~pimc_jax.data.patches.Patch` objects.

``config.data.name`` selects the source of :func:`load_patches`:

* ``synthetic`` (default): the embedded PASTIS-like generator, no download;
* ``pastis``: the official PASTIS layout under ``config.data.path`` (TFDS builder);
* ``patches``: a folder of the user's own SITS patches (:mod:`pimc_jax.data.user`);
* ``synthetic_floods``: the synthetic flood scenes (:mod:`pimc_jax.data.synthetic.floods`),
  Sentinel-2 and Sentinel-1 over dates of rising water, from scene
  :data:`FLOOD_PRETRAIN_FIRST_SCENE` on (the flood evaluation's chips are scenes below it);
* ``sen1floods11``: the hand-labelled Sen1Floods11 chips of the train split under
  ``config.data.path`` (:mod:`pimc_jax.data.sen1floods11`), each a one-date patch of
  Sentinel-2 and Sentinel-1, for the Sentinel-1 ↔ Sentinel-2 pairings.

Modules: the container and the sources first, then pre-training sampling in the order a
batch is built:

* :mod:`~pimc_jax.data.patches`: the :class:`Patch` container, sharding over hosts;
* :mod:`~pimc_jax.data.classes`: class-name tables (PASTIS, EuroSAT, synthetic);
* :mod:`~pimc_jax.data.synthetic`: the synthetic PASTIS-like patches and EuroSAT stand-in;
* :mod:`~pimc_jax.data.pastis`, :mod:`~pimc_jax.data.eurosat`: TFDS builders of the real
  sets (imported only when asked for: they pull in ``tensorflow_datasets``);
* :mod:`~pimc_jax.data.user`: the user's patch folders and pixel files;
* :mod:`~pimc_jax.data.geotiff`: GeoTIFF reading and writing (georeferenced outputs);
* :mod:`~pimc_jax.data.splits`: seeded stratified splits and folds;
* :mod:`~pimc_jax.data.statistics`: per-band statistics (image standardisation);
* :mod:`~pimc_jax.data.pixels`: which pixels a batch uses (uniform, Hilbert curve);
* :mod:`~pimc_jax.data.views`: a pixel's two views (padded series, image crop);
* :mod:`~pimc_jax.data.pairs`: :class:`~pimc_jax.data.pairs.PairSampler`, pair batches;
* :mod:`~pimc_jax.data.pipeline`: batches built ahead of the step by worker threads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import ml_collections
import numpy as np
from absl import logging

from pimc_jax import parallel
from pimc_jax.data.patches import Patch, shard_patches
from pimc_jax.data.radar import check_s1_setting
from pimc_jax.data.sen1floods11 import load_sen1floods11
from pimc_jax.data.synthetic import make_patches
from pimc_jax.data.synthetic.floods import make_flood_patches
from pimc_jax.data.user import DEFAULT_SCL_INVALID_CLASSES, load_patch_folder

PATCH_SOURCES = ("synthetic", "pastis", "patches", "synthetic_floods", "sen1floods11")
FLOOD_PRETRAIN_FIRST_SCENE = 100_000


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

    ``data_config.s1`` (``none`` | ``S1A`` | ``S1D`` | ``both``) adds the Sentinel-1 series:
    PASTIS-R orbits, synthetic radar (any value but ``none``), or what a patch folder's
    files hold (dropped with ``none``). Patches of a source without S1 for them get an
    empty series (:attr:`Patch.has_s1` False): S1 views leave them out.
    """
    name = data_config.name
    s1 = check_s1_setting(data_config.get("s1", "none"))
    if name in ("synthetic", "synthetic_floods") and data_config.get("path"):
        raise ValueError(
            f"config.data.path={data_config.path!r} is set, but config.data.name={name!r} "
            "generates its data and reads no files; add --config.data.name=patches (a folder "
            "of .npz or GeoTIFF patches) or --config.data.name=pastis"
        )
    if folds is None and data_config.get("folds"):
        folds = tuple(data_config.folds)
    if name == "synthetic":
        patches = make_patches(
            data_config.num_patches,
            seed=data_config.synthetic_seed,
            folds=5,  # round robin over PASTIS's five folds
            size=data_config.patch_size,
            min_dates=data_config.synthetic_min_dates,
            max_dates=data_config.synthetic_max_dates,
            s1=s1 is not None,
        )
    elif name == "synthetic_floods":
        patches = make_flood_patches(
            data_config.num_patches,
            seed=data_config.synthetic_seed,
            size=data_config.patch_size,
            num_dates=4,
            first_index=FLOOD_PRETRAIN_FIRST_SCENE,
        )
    elif name == "pastis":
        # Lazy: the TFDS builder imports tensorflow_datasets, needed on this path only.
        from pimc_jax.data.pastis import load_pastis_patches, prepare_pastis

        _require_path(data_config, name)
        if process_count > 1:
            # One process prepares the TFDS dataset; the others wait, then read their shard.
            if process_index == 0:
                prepare_pastis(data_config.path)
            parallel.wait_for_all_processes("pimc_jax: PASTIS prepared")
        patches = load_pastis_patches(
            data_config.path,
            folds=tuple(folds or (1, 2, 3, 4, 5)),
            process_index=process_index,
            process_count=process_count,
            lazy=lazy,
            s1=s1,
        )
        folds, process_index, process_count = None, 0, 1  # already selected and sharded
    elif name == "sen1floods11":
        # The hand-labelled chips of the train split as one-date patches (S2 and S1): the
        # pairs Sentinel-1 <-> Sentinel-2 pre-training reads; their labels are not used.
        _require_path(data_config, name)
        chips = load_sen1floods11(data_config.path, "train")
        patches = [chip.to_patch() for chip in chips]
        if s1 is None:
            patches = [
                dataclasses.replace(p, s1_bands=None, s1_dates=None, s1_band_names=())
                for p in patches
            ]
    elif name == "patches":
        _require_path(data_config, name)
        patches = load_patch_folder(
            data_config.path,
            scl_invalid_classes=tuple(
                data_config.get("scl_invalid_classes", DEFAULT_SCL_INVALID_CLASSES)
            ),
        )
        if s1 is None:
            patches = [
                dataclasses.replace(p, s1_bands=None, s1_dates=None, s1_band_names=())
                if p.s1_bands is not None
                else p
                for p in patches
            ]
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
    if not lazy:
        log_patches(
            patches,
            f"data.name={name}"
            + (f" {data_config.path}" if name not in ("synthetic", "synthetic_floods") else ""),
        )
    return patches


def log_patches(patches: Sequence[Patch], source: str) -> None:
    """One log line naming the source, patches, sizes, dates and bands and the share of
    gaps; a warning naming the patches that are mostly gaps (over 80 % of observations)."""
    gaps = []
    for patch in patches:
        values = patch.bands[..., 0]
        gaps.append(float(np.isnan(values).mean()) if values.dtype.kind == "f" else 0.0)
    dates = [patch.num_dates for patch in patches]
    sizes = sorted({(patch.height, patch.width) for patch in patches})
    shown = ", ".join(f"{h}×{w}" for h, w in sizes[:3]) + (" …" if len(sizes) > 3 else "")
    logging.info(
        "Data: %s: %d patches (%s px), %d–%d dates (median %g), bands %s, %.1f %% of "
        "observations are gaps",
        source,
        len(patches),
        shown,
        min(dates),
        max(dates),
        float(np.median(dates)),
        list(patches[0].band_names),
        100.0 * float(np.mean(gaps)),
    )
    mostly = [patch.patch_id for patch, share in zip(patches, gaps, strict=True) if share > 0.8]
    if mostly:
        logging.warning(
            "%d patches are mostly gaps (over 80 %% of observations; e.g. %s): check nodata, "
            "scl_invalid_classes and the dates",
            len(mostly),
            mostly[0],
        )


def _require_path(data_config: ml_collections.ConfigDict, name: str) -> None:
    if not data_config.get("path"):
        raise ValueError(f"data.name={name!r} needs --config.data.path=DIR")
