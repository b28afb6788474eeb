"""Sentinel-1 series beside the Sentinel-2 ones: the orbit setting, orbits merged by date,
and the S1 date nearest to a given day.

Every S1 series a :class:`~pimc_jax.data.patches.Patch` holds is ``(T1, H, W, C1)`` float32
backscatter in dB (NaN = no-data) on its own dates. PASTIS-R delivers one series per orbit
direction, ascending (``S1A``) and descending (``S1D``); the setting ``data.s1`` chooses
``"S1A"``, ``"S1D"``, ``"both"`` (merged by date, :func:`merge_s1_series`) or ``"none"``.

Backscatter is averaged in linear power, never in dB: two acquisitions on the same day
give ``10·log10((10^(a/10) + 10^(b/10)) / 2)``, and a ``VV/VH`` ratio channel is
recomputed as ``VV_dB − VH_dB`` from the merged VV and VH.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pimc_jax.data.patches import Patch
from pimc_jax.indices import canonical_radar_band_name
from pimc_jax.vocabulary import check_multilook  # noqa: F401  (re-exported)

#: Values of the ``data.s1`` setting that choose a Sentinel-1 series (``"none"`` or
#: ``False`` chooses none).
S1_SETTINGS: tuple[str, ...] = ("S1A", "S1D", "both")
#: PASTIS-R's two orbit directions: ascending and descending.
S1_ORBITS: tuple[str, ...] = ("S1A", "S1D")


def check_s1_setting(value: Any) -> str | None:
    """The ``data.s1`` setting as ``"S1A"``, ``"S1D"``, ``"both"`` or ``None`` (no S1).

    ``None``, ``False``, ``""`` and ``"none"`` give None; ``True`` gives ``"both"``;
    strings are case-insensitive.

    Raises:
      ValueError: one line naming the setting and its accepted values.
    """
    if value is None or value is False:
        return None
    if value is True:
        return "both"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none"):
            return None
        for setting in S1_SETTINGS:
            if text == setting.lower():
                return setting
    choices = ", ".join(repr(setting) for setting in S1_SETTINGS)
    raise ValueError(f"data.s1 must be 'none' or one of {choices}, got {value!r}")


def s1_orbits(setting: str) -> tuple[str, ...]:
    """The orbits a setting of :data:`S1_SETTINGS` reads: ``("S1A",)``, ``("S1D",)`` or both."""
    checked = check_s1_setting(setting)
    if checked is None:
        return ()
    return S1_ORBITS if checked == "both" else (checked,)


def db_to_linear(values_db: np.ndarray) -> np.ndarray:
    """``10^(dB / 10)`` as float64; NaN stays NaN."""
    return np.power(10.0, np.asarray(values_db, np.float64) / 10.0)


def linear_to_db(values: np.ndarray) -> np.ndarray:
    """``10·log10(values)`` as float64; non-positive or non-finite values give NaN."""
    values = np.asarray(values, np.float64)
    ok = np.isfinite(values) & (values > 0)
    return np.where(ok, 10.0 * np.log10(np.where(ok, values, 1.0)), np.nan)


def merge_s1_series(
    series: Iterable[tuple[np.ndarray, np.ndarray]], band_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Several S1 series of one patch (orbits) as one, sorted by date.

    Args:
      series: ``(bands, dates)`` pairs: ``(T_k, H, W, C)`` dB values (NaN = no-data) and
        ``(T_k,)`` integer days, in time order (equal days allowed); empty series are
        skipped.
      band_names: the ``C`` channel names shared by all series.

    Returns:
      ``bands`` ``(T, H, W, C)`` float32 dB and ``dates`` ``(T,)`` int32 strictly
      increasing, the union of all days. Where several acquisitions share a day, each
      channel is their mean in linear power over the valid (finite) ones, NaN where none
      is; on such a shared day a ``VV/VH`` channel is ``VV − VH`` of the merged dB values.

    Raises:
      ValueError: series of different pixel grids or channel counts, or no date at all.
    """
    pairs = [(np.asarray(b), np.asarray(d)) for b, d in series if np.asarray(d).size]
    if not pairs:
        raise ValueError("merge_s1_series: no Sentinel-1 date in any series")
    shapes = {bands.shape[1:] for bands, _ in pairs}
    if len(shapes) != 1 or len(band_names) != pairs[0][0].shape[-1]:
        raise ValueError(
            f"merge_s1_series: series must share (H, W, C) with C = {len(band_names)} "
            f"band names, got {sorted(shapes)}"
        )
    dates = np.concatenate([d for _, d in pairs]).astype(np.int64)
    order = np.argsort(dates, kind="stable")
    bands = np.concatenate([b for b, _ in pairs])[order]
    dates = dates[order]
    days, starts = np.unique(dates, return_index=True)
    if days.size == dates.size:  # no shared day: a reordering only
        return bands.astype(np.float32), dates.astype(np.int32)
    linear = db_to_linear(bands)
    valid = np.isfinite(linear)
    total = np.add.reduceat(np.where(valid, linear, 0.0), starts, axis=0)
    count = np.add.reduceat(valid.astype(np.float64), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        merged = linear_to_db(total / count)
    shared = np.diff(np.append(starts, dates.size)) > 1
    merged[shared] = _ratio_from_vv_vh(merged[shared], band_names)
    return merged.astype(np.float32), days.astype(np.int32)


def _ratio_from_vv_vh(values_db: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """``values_db`` (channels last) with a ``VV/VH`` channel set to ``VV − VH`` where all
    three channels exist (after averaging VV and VH in linear power, the ratio's own
    average is not their ratio); unchanged otherwise."""
    names = [canonical_radar_band_name(str(name)) for name in band_names]
    if "VV/VH" in names and "VV" in names and "VH" in names:
        values_db[..., names.index("VV/VH")] = (
            values_db[..., names.index("VV")] - values_db[..., names.index("VH")]
        )
    return values_db


def nearest_dates(
    dates: np.ndarray, days: np.ndarray | float, max_gap: float | None = None
) -> np.ndarray:
    """Index of the date of ``dates`` nearest to each of ``days``, ``-1`` beyond ``max_gap``.

    For the Sentinel-1 image at the date nearest to a Sentinel-2 image date.

    Args:
      dates: ``(T,)`` sorted days (an S1 series' ``s1_dates``); may be empty.
      days: the days to match, any shape (scalar included).
      max_gap: largest accepted ``|date − day|`` in days; None accepts any.

    Returns:
      int32 array of ``days``' shape: the index into ``dates`` (the earlier date on a
      tie), or ``-1`` where ``dates`` is empty or the nearest date is more than
      ``max_gap`` days away.
    """
    dates = np.asarray(dates, np.float64)
    days = np.asarray(days, np.float64)
    if dates.size == 0:
        return np.full(days.shape, -1, np.int32)
    right = np.clip(np.searchsorted(dates, days, side="left"), 0, dates.size - 1)
    left = np.clip(right - 1, 0, dates.size - 1)
    take_left = np.abs(days - dates[left]) <= np.abs(dates[right] - days)
    index = np.where(take_left, left, right)
    if max_gap is not None:
        index = np.where(np.abs(dates[index] - days) <= max_gap, index, -1)
    return index.astype(np.int32)


def count_without_s1(patches: Iterable[Patch]) -> int:
    """How many ``patches`` hold no Sentinel-1 date (left out of S1 views)."""
    return sum(not patch.has_s1 for patch in patches)


def s1_channel_columns(
    band_names: Sequence[str], wanted: Sequence[str], setting: str
) -> np.ndarray:
    """Positions ``(len(wanted),)`` int64 of the Sentinel-1 channels ``wanted`` among
    ``band_names``, names compared in canonical form (e.g. an ``s1_image`` view's
    channels among a patch's S1 bands).

    Raises:
      ValueError: one line naming ``setting`` and the channels that are missing.
    """
    names = [canonical_radar_band_name(str(name)) for name in band_names]
    canonical = [canonical_radar_band_name(str(name)) for name in wanted]
    missing = [name for name in canonical if name not in names]
    if missing:
        raise ValueError(
            f"{setting}={tuple(wanted)!r}: {missing} not among the Sentinel-1 bands "
            f"{tuple(band_names)}"
        )
    return np.asarray([names.index(name) for name in canonical], np.int64)


def pixel_s1_series(
    s1_bands: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    band_names: Sequence[str],
    window: int = 1,
) -> np.ndarray:
    """Sentinel-1 series of pixels, optionally multilooked: ``(N, T1, C1)`` float32 dB.

    Speckle makes one radar pixel's backscatter swing by several dB from date to date;
    averaging its ``window × window`` neighbourhood (a boxcar multilook) in linear power,
    date by date, trades resolution for that noise. Neighbours outside the patch and NaN
    values are left out of the mean (NaN where none is valid); a ``VV/VH`` channel is
    recomputed as ``VV − VH`` of the averaged dB values when both exist.

    Args:
      s1_bands: ``(T1, H, W, C1)`` backscatter in dB (a patch's ``s1_bands``).
      rows, cols: ``(N,)`` pixel coordinates.
      band_names: the ``C1`` channel names.
      window: odd side of the neighbourhood (:func:`check_multilook`); 1 = the pixel alone.
    """
    window = check_multilook(window)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    if window == 1:
        return np.ascontiguousarray(np.swapaxes(s1_bands[:, rows, cols, :], 0, 1), np.float32)
    height, width = s1_bands.shape[1:3]
    offsets = np.arange(window) - window // 2
    near_rows = rows[:, None, None] + offsets[None, :, None]  # (N, w, 1)
    near_cols = cols[:, None, None] + offsets[None, None, :]  # (N, 1, w)
    inside = (near_rows >= 0) & (near_rows < height) & (near_cols >= 0) & (near_cols < width)
    near = s1_bands[:, np.clip(near_rows, 0, height - 1), np.clip(near_cols, 0, width - 1), :]
    linear = db_to_linear(near)  # (T1, N, w, w, C1)
    valid = np.isfinite(linear) & inside[None, ..., None]
    total = np.where(valid, linear, 0.0).sum(axis=(2, 3))
    count = valid.sum(axis=(2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        averaged = _ratio_from_vv_vh(linear_to_db(total / count), band_names)  # (T1, N, C1)
    return np.ascontiguousarray(np.swapaxes(averaged, 0, 1), np.float32)
