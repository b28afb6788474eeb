"""Model inputs of :func:`pimc_jax.encode.encode` and :func:`pimc_jax.encode.encode_patch`.

Raw values as users hand them (digital numbers with a ``scale``, a ``nodata`` fill, ISO
date strings, band-table names) become the checked, padded float32 arrays the jitted
towers take: series with their dates and masks padded to a date bucket, image and
Sentinel-1 crops with their channels picked by name, a patch's Sentinel-1 series and
crop frame. Batches are cut into chunks padded to a few bucket sizes
(:func:`_chunked`) and rows that repeat byte for byte are embedded once
(:func:`_encode_distinct`). Every check fails with one line naming the problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pimc_jax import encode_checks as checks
from pimc_jax import indices as indices_lib
from pimc_jax import progress as progress_lib
from pimc_jax.data.patches import Patch, series_dates
from pimc_jax.data.radar import pixel_s1_series, s1_channel_columns
from pimc_jax.data.user import dates_to_days
from pimc_jax.data.views import (
    MEDIAN_COMPOSITE,
    median_composite,
    pad_rows,
    s1_image_dates,
    s2_image_days,
)
from pimc_jax.models import ModelSpec

# Batches are padded up to a power of two of at least this many rows (and split
# into chunks of at most ``_MAX_CHUNK``), so any N reuses a handful of compilations.
_MIN_BUCKET = 8
_MAX_CHUNK = 1024
_DATE_BUCKET = 16


def _bucket(n: int) -> int:
    return max(_MIN_BUCKET, 1 << (n - 1).bit_length())


def _chunked(
    fn, arrays: Sequence[np.ndarray], progress: bool | None = False, desc: str = ""
) -> tuple[np.ndarray, ...]:
    """Runs ``fn`` over row chunks of ``arrays`` with bucketed padding; concatenates.

    ``fn`` returns a tuple of arrays with rows on axis 0; so does this. With no rows at
    all, ``fn`` runs once on a zero-filled bucket so the outputs are ``(0, ...)`` arrays of
    the right trailing shape and dtype. ``progress``: a bar over the chunks when there
    is more than one (:mod:`pimc_jax.progress`; None = on a terminal only).
    """
    total = arrays[0].shape[0]
    if total == 0:
        dummy = [np.zeros((_MIN_BUCKET, *a.shape[1:]), a.dtype) for a in arrays]
        return tuple(np.asarray(out)[:0] for out in fn(*dummy))
    pieces: list[list[np.ndarray]] = []
    starts = range(0, total, _MAX_CHUNK)
    if len(starts) > 1:
        starts = progress_lib.progress(starts, desc=desc, unit="chunk", enabled=progress)
    for start in starts:
        chunk = [a[start : start + _MAX_CHUNK] for a in arrays]
        rows = chunk[0].shape[0]
        padded = [pad_rows(a, _bucket(rows)) for a in chunk]
        pieces.append([np.asarray(out)[:rows] for out in fn(*padded)])
    return tuple(np.concatenate(parts) for parts in zip(*pieces, strict=True))


def _unique_rows(arrays: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The distinct rows of ``arrays`` taken together (byte for byte), and how to expand them.

    Returns:
      ``(distinct, inverse)``: ``distinct`` the arrays restricted to the first occurrence
      of each distinct row (in order of first occurrence), ``inverse`` ``(N,)`` int64 with
      ``distinct[k][inverse] == arrays[k]``; or ``(arrays, None)`` when no row repeats.
    """
    num = arrays[0].shape[0]
    if num < 2:
        return list(arrays), None
    raw = np.concatenate(
        [np.ascontiguousarray(a).reshape(num, -1).view(np.uint8) for a in arrays], axis=1
    )
    keys = np.ascontiguousarray(raw).view(np.dtype((np.void, raw.shape[1])))[:, 0]
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if first.size == num:
        return list(arrays), None
    # np.unique orders by key; re-number in order of first occurrence.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return [a[first[order]] for a in arrays], rank[inverse.reshape(-1)]


def _encode_distinct(
    fn, arrays: Sequence[np.ndarray], progress: bool | None, desc: str
) -> tuple[np.ndarray, ...]:
    """:func:`_chunked` on the distinct rows of ``arrays`` only, expanded back to all rows."""
    distinct, inverse = _unique_rows(arrays)
    outputs = _chunked(fn, distinct, progress, desc)
    return outputs if inverse is None else tuple(out[inverse] for out in outputs)


def _check_scale(scale: float | None) -> None:
    if scale is None:
        return
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)):
        raise ValueError(f"scale must be a finite positive number or None, got {scale!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite positive number or None, got {scale!r}")


def _to_reflectance(raw: Any, scale: float | None, nodata: float | None, name: str) -> np.ndarray:
    """Raw band values → float32, ``raw × scale`` if ``scale`` is given; ``nodata`` → NaN."""
    indices_lib.check_numeric(raw, name)
    raw = np.asarray(raw)
    missing = (raw == nodata) if nodata is not None else None
    with np.errstate(over="ignore", invalid="ignore"):
        if scale is None:
            values = raw.astype(np.float32)
        else:
            # Overflow gives inf, which counts as no-data downstream.
            values = (raw.astype(np.float64) * scale).astype(np.float32)
    if missing is not None and np.any(missing):
        values = np.where(missing, np.float32(np.nan), values)
    return values


def _parse_dates(value: Any, name: str = "batch['dates']") -> np.ndarray:
    """Numeric days, ISO strings, datetime64 or dates → float32 days (errors name ``name``)."""
    array = np.asarray(value)
    if array.dtype.kind not in "USOMiuf":
        raise ValueError(
            f"{name} must be numeric days or ISO date strings, got dtype {array.dtype}"
        )
    return dates_to_days(array, name).astype(np.float32)  # whole days, as the loaders


def _series_dates_mask(
    batch: Mapping[str, Any], values_key: str, num: int, num_dates: int
) -> tuple[np.ndarray, np.ndarray]:
    """The checked ``(N, T)`` float32 dates and bool mask of series ``batch[values_key]``
    (keys ``dates``/``mask``, or ``s1_dates``/``s1_mask`` for ``s1_bands``)."""
    prefix = "s1_" if values_key == "s1_bands" else ""
    dates_key, mask_key = f"{prefix}dates", f"{prefix}mask"
    if dates_key not in batch:
        raise ValueError(
            f"batch has {values_key!r} but no {dates_key!r} ((T,) or (N, T) days or ISO strings)"
        )
    name = f"batch[{dates_key!r}]"
    dates = series_dates(_parse_dates(batch[dates_key], name), num, num_dates, name)
    mask = np.asarray(batch.get(mask_key, np.ones((num, num_dates), bool)), bool)
    if mask.shape != (num, num_dates):
        raise ValueError(
            f"batch[{mask_key!r}] must be (N, T) = ({num}, {num_dates}), got {mask.shape}"
        )
    checks.check_increasing_dates(dates, mask, name)
    return dates, mask


def _pad_dates(
    values: np.ndarray, dates: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pads the time axis of ``(N, T, C)`` series to a multiple of ``_DATE_BUCKET`` (so that
    new lengths rarely recompile): values NaN, dates the last date, mask False."""
    num, num_dates, channels = values.shape
    padded_dates = max(1, -(-num_dates // _DATE_BUCKET)) * _DATE_BUCKET
    if padded_dates != num_dates:
        extra = padded_dates - num_dates
        last = dates[:, -1:] if num_dates else np.zeros((num, 1), np.float32)
        values = np.concatenate([values, np.full((num, extra, channels), np.nan, np.float32)], 1)
        dates = np.concatenate([dates, np.repeat(last, extra, axis=1)], 1)
        mask = np.concatenate([mask, np.zeros((num, extra), bool)], 1)
    return values, np.ascontiguousarray(dates), mask


def _series_inputs(
    spec: ModelSpec,
    batch: Mapping[str, Any],
    scale: float | None = None,
    nodata: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Checked, padded ``(bands, dates, mask, band_names)``: float32 ``(N, T', C)``,
    float32 ``(N, T')``, bool ``(N, T')`` with ``T'`` the date bucket, names ``(C,)``."""
    bands = _to_reflectance(batch["bands"], scale, nodata, "batch['bands']")
    if bands.ndim != 3:
        raise ValueError(f"batch['bands'] must be (N, T, C), got shape {bands.shape}")
    num, num_dates, num_bands = bands.shape
    band_names = indices_lib.resolve_band_names(batch.get("band_names", spec.band_names))
    if len(band_names) != num_bands:
        raise ValueError(
            f"batch['bands'] has {num_bands} bands but band_names has {len(band_names)}: "
            f"{band_names}"
        )
    dates, mask = _series_dates_mask(batch, "bands", num, num_dates)
    bands, dates, mask = _pad_dates(bands, dates, mask)
    return bands, dates, mask, band_names


def _radar_inputs(
    spec: ModelSpec, batch: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked, padded ``(s1_bands, s1_dates, s1_mask)``: float32 ``(N, T', C1)`` dB with the
    channels in ``spec.s1_band_names`` order (NaN for one not given, which the model's
    radar series then do not read), float32 ``(N, T')`` days, bool ``(N, T')``; ``T'`` the
    date bucket."""
    indices_lib.check_numeric(batch["s1_bands"], "batch['s1_bands']")
    with np.errstate(over="ignore", invalid="ignore"):
        s1 = np.asarray(batch["s1_bands"]).astype(np.float32)
    if s1.ndim != 3:
        raise ValueError(f"batch['s1_bands'] must be (N, T1, C1) dB, got shape {s1.shape}")
    num, num_dates, channels = s1.shape
    names = indices_lib.check_radar_band_names(batch.get("s1_band_names", spec.s1_band_names))
    if len(names) != channels:
        raise ValueError(
            f"batch['s1_bands'] has {channels} channels but s1_band_names has {len(names)}: {names}"
        )
    # One-line error when a channel the model's radar series read is missing.
    indices_lib.resolve_radar_indices(spec.s1_indices, names)
    wanted = indices_lib.check_radar_band_names(spec.s1_band_names)
    if names != wanted:
        columns = [s1[..., names.index(n)] if n in names else None for n in wanted]
        blank = np.full((num, num_dates), np.nan, np.float32)
        s1 = np.stack([blank if c is None else c for c in columns], axis=-1)
    dates, mask = _series_dates_mask(batch, "s1_bands", num, num_dates)
    return _pad_dates(np.ascontiguousarray(s1), dates, mask)


def _s1_image_inputs(spec: ModelSpec, batch: Mapping[str, Any]) -> np.ndarray:
    """``batch['s1_image']`` checked: ``(N, k, k, C2)`` float32 dB, ``C2`` the model's
    ``spec.s1_image_bands``."""
    indices_lib.check_numeric(batch["s1_image"], "batch['s1_image']")
    with np.errstate(over="ignore", invalid="ignore"):
        image = np.asarray(batch["s1_image"]).astype(np.float32)
    if image.ndim != 4:
        raise ValueError(f"batch['s1_image'] must be (N, k, k, C) dB, got shape {image.shape}")
    checks.check_crop_size(image, spec.crop_size, "batch['s1_image']")
    if image.shape[-1] != len(spec.s1_image_bands):
        raise ValueError(
            f"batch['s1_image'] has {image.shape[-1]} channels; the model expects "
            f"{len(spec.s1_image_bands)} ({spec.s1_image_bands}, in that order)"
        )
    return image


def _implausible_to_nan(reflectance: np.ndarray) -> np.ndarray:
    """Reflectance outside :data:`~pimc_jax.indices.PLAUSIBLE_REFLECTANCE` → NaN (no-data)."""
    low, high = indices_lib.PLAUSIBLE_REFLECTANCE
    with np.errstate(invalid="ignore"):
        keep = (reflectance >= low) & (reflectance <= high)
    return np.where(keep, reflectance, np.float32(np.nan)).astype(np.float32)


def _image_inputs(spec: ModelSpec, batch: Mapping[str, Any]) -> np.ndarray:
    indices_lib.check_numeric(batch["image"], "batch['image']")
    image = _implausible_to_nan(np.asarray(batch["image"], np.float32))
    if image.ndim != 4:
        raise ValueError(f"batch['image'] must be (N, k, k, C), got shape {image.shape}")
    checks.check_crop_size(image, spec.crop_size, "batch['image']")
    if "image_band_names" in batch:
        names = [indices_lib.canonical_band_name(n) for n in batch["image_band_names"]]
        if len(names) != image.shape[-1]:
            raise ValueError(
                f"batch['image'] has {image.shape[-1]} bands but image_band_names has {len(names)}"
            )
        wanted = [indices_lib.canonical_band_name(n) for n in spec.image_bands]
        missing = [w for w in wanted if w not in names]
        if missing:
            raise ValueError(
                f"image bands {missing} needed by the model are not in image_band_names {names}"
            )
        image = image[..., [names.index(w) for w in wanted]]
    if image.shape[-1] != len(spec.image_bands):
        raise ValueError(
            f"batch['image'] has {image.shape[-1]} bands; the model expects "
            f"{len(spec.image_bands)} ({spec.image_bands}); pass image_band_names to select them"
        )
    return image


def s1_image_frame(patch: Patch, spec: ModelSpec, max_gap_days: float | None) -> np.ndarray:
    """The ``(H, W, C2)`` float32 dB Sentinel-1 image of ``patch`` an ``s1_image`` view crops.

    Its date is chosen as pre-training chooses it for the median-composite S2 image
    (:func:`~pimc_jax.data.views.s2_image_days`, :func:`~pimc_jax.data.views.s1_image_dates`):
    the S1 date nearest to the patch's median S2 date, within ``max_gap_days``; channels
    ``spec.s1_image_bands``.
    """
    s2_day = s2_image_days(patch, np.asarray([MEDIAN_COMPOSITE]))
    index = int(s1_image_dates(patch, s2_day, max_gap_days)[0])
    if index < 0:
        raise ValueError(
            f"patch {patch.patch_id!r}: no Sentinel-1 date within s1_max_gap_days="
            f"{max_gap_days} of its Sentinel-2 image day {int(s2_day[0])} (the median of its "
            f"dates), which the s1_image view needs"
        )
    columns = s1_channel_columns(patch.s1_band_names, spec.s1_image_bands, "spec.s1_image_bands")
    return np.asarray(patch.s1_bands[index][..., columns], np.float32)


def _s1_series(
    patch: Patch, spec: ModelSpec, rows: np.ndarray, cols: np.ndarray, pixels: int
) -> np.ndarray:
    """:func:`~pimc_jax.data.radar.pixel_s1_series` of pixels ``(rows, cols)`` with the model's
    multilook, computed ``pixels // s1_multilook²`` pixels at a time (the neighbourhoods of
    at most about ``pixels`` pixels held at once). Returns ``(N, T1, C1)`` float32 dB."""
    step = max(1, pixels // spec.s1_multilook**2)
    pieces = [
        pixel_s1_series(
            patch.s1_bands,
            rows[start : start + step],
            cols[start : start + step],
            patch.s1_band_names,
            spec.s1_multilook,
        )
        for start in range(0, max(rows.size, 1), step)  # one empty piece for no pixel
    ]
    return np.concatenate(pieces)


def patch_image_frame(
    patch: Patch, spec: ModelSpec, view: str, s1_max_gap_days: float | None = None
) -> np.ndarray:
    """The ``(H, W, C)`` float32 raw image an image view of ``patch`` crops, as
    :func:`pimc_jax.encode.encode_patch` builds it: for ``s2_image`` the per-pixel median
    over dates of the reflectance in ``spec.image_bands`` (implausible values as no-data,
    NaN where a pixel has no valid date); for ``s1_image`` :func:`s1_image_frame` (dB).

    Raises:
      ValueError: an image band the patch does not hold, or no S1 date near enough.
    """
    if view == "s1_image":
        return s1_image_frame(patch, spec, s1_max_gap_days)
    canonical = [indices_lib.canonical_band_name(name) for name in patch.band_names]
    columns = []
    for wanted in spec.image_bands:
        name = indices_lib.canonical_band_name(wanted)
        if name not in canonical:
            raise ValueError(
                f"patch {patch.patch_id!r}: image band {wanted!r} is not among its bands "
                f"{patch.band_names}"
            )
        columns.append(canonical.index(name))
    with np.errstate(over="ignore", invalid="ignore"):
        return median_composite(_implausible_to_nan(patch.reflectance(np.s_[..., columns])))
