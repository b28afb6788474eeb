"""Per-band statistics of patches: what standardises the image view.

:func:`band_statistics` measures the mean and standard deviation of named bands over the
pixels and dates of some patches; :func:`image_statistics` does it for the image bands
on this process's shard and agrees on one result across processes, so every host builds
the same :class:`~pimc_jax.models.ModelSpec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pimc_jax import parallel
from pimc_jax.data.patches import Patch
from pimc_jax.data.views import S1_VIEWS
from pimc_jax.indices import band_index, canonical_radar_band_name


def band_statistics(
    patches: Sequence[Patch],
    band_names: Sequence[str],
    *,
    max_patches: int | None = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over all pixels and dates, ignoring NaN.

    Args:
      patches: the patches; at most ``max_patches`` of them, evenly spaced, are read
        (``None`` reads all).
      band_names: the bands, looked up by name in each patch.

    Returns:
      ``(mean, std)``, each ``(len(band_names),)`` float32; a zero std is replaced by 1.
    """
    if not patches:
        raise ValueError("band_statistics needs at least one patch")
    chosen = list(patches)
    if max_patches is not None and len(chosen) > max_patches:
        keep = np.linspace(0, len(chosen) - 1, max_patches).round().astype(np.int64)
        chosen = [chosen[i] for i in keep]
    num_bands = len(band_names)
    total = np.zeros(num_bands)
    total_sq = np.zeros(num_bands)
    count = np.zeros(num_bands)
    for patch in chosen:
        columns = [band_index(patch.band_names, name) for name in band_names]
        values = patch.reflectance(np.s_[..., columns]).reshape(-1, num_bands).astype(np.float64)
        valid = np.isfinite(values)
        values = np.where(valid, values, 0.0)
        total += values.sum(axis=0)
        total_sq += (values**2).sum(axis=0)
        count += valid.sum(axis=0)
    if np.any(count == 0):
        missing = [name for name, c in zip(band_names, count, strict=True) if c == 0]
        raise ValueError(f"no valid (non-NaN) value for bands {missing}")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def image_statistics(
    patches: Sequence[Patch], image_bands: tuple[str, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and std of the image bands, agreed across processes.

    Each process measures its own shard; multi-process runs average the results so
    every host builds the same model spec.

    Returns:
      ``(mean, std)``, each ``len(image_bands)`` floats; std floored at 1e-6.
    """
    mean, std = band_statistics(patches, image_bands)
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    mean, std = parallel.mean_over_processes(np.stack([mean, std]))
    return tuple(float(v) for v in mean), tuple(float(max(v, 1e-6)) for v in std)


def s1_statistics(
    patches: Sequence[Patch], band_names: Sequence[str], *, max_patches: int | None = 256
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (dB) of the named Sentinel-1 bands, agreed across processes.

    Only patches with S1 (:attr:`Patch.has_s1`) are read, at most ``max_patches`` evenly
    spaced ones; NaN is ignored.

    Returns:
      ``(mean, std)``, each ``len(band_names)`` floats; std floored at 1e-6 (1 where zero).
    """
    chosen = [patch for patch in patches if patch.has_s1]
    if not chosen:
        raise ValueError("s1_statistics needs at least one patch with Sentinel-1")
    if max_patches is not None and len(chosen) > max_patches:
        keep = np.linspace(0, len(chosen) - 1, max_patches).round().astype(np.int64)
        chosen = [chosen[i] for i in keep]
    num = len(band_names)
    sums = np.zeros((3, num))
    for patch in chosen:
        names = list(patch.s1_band_names)
        columns = [names.index(name) for name in band_names]
        values = np.asarray(patch.s1_bands[..., columns], np.float64).reshape(-1, num)
        valid = np.isfinite(values)
        values = np.where(valid, values, 0.0)
        sums += np.stack([valid.sum(0), values.sum(0), (values**2).sum(0)])
    sums = parallel.sum_over_processes(sums)
    count = np.maximum(sums[0], 1.0)
    mean = sums[1] / count
    std = np.sqrt(np.maximum(sums[2] / count - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(max(v, 1e-6)) for v in std)


def s1_spec_facts(
    patches: Sequence[Patch], views: Sequence[str], s1_image_bands: Sequence[str]
) -> dict[str, Any]:
    """The Sentinel-1 facts :meth:`pimc_jax.models.ModelSpec.from_config` needs for ``views``.

    Returns:
      ``{}`` when no view reads S1; else ``s1_band_names`` (of the first patch with S1) and,
      for an ``s1_image`` view, ``s1_image_mean`` / ``s1_image_std`` of ``s1_image_bands``
      (:func:`s1_statistics`).
    """
    if not any(view in S1_VIEWS for view in views):
        return {}
    first = next((patch for patch in patches if patch.has_s1), None)
    if first is None:
        raise ValueError(f"model.views={tuple(views)!r} reads Sentinel-1, but no patch has it")
    facts: dict[str, Any] = {"s1_band_names": tuple(first.s1_band_names)}
    if "s1_image" in views:
        names = tuple(canonical_radar_band_name(name) for name in s1_image_bands)
        facts["s1_image_mean"], facts["s1_image_std"] = s1_statistics(patches, names)
    return facts
