"""Pixel time series in one ``.npz`` file (format: :mod:`pimc_jax.data.user`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pimc_jax.data import validate
from pimc_jax.data.patches import series_dates
from pimc_jax.data.user_fields import (
    DEFAULT_SCL_INVALID_CLASSES,
    check_band_names,
    check_labels,
    check_numeric,
    dates_to_days,
    load_npz_arrays,
    observation_gaps,
)

if TYPE_CHECKING:  # GeoTIFF reading imports rasterio only when a folder holds GeoTIFFs
    pass


@dataclasses.dataclass(frozen=True)
class PixelSeries:
    """Pixel time series read by :func:`load_pixel_npz`.

    Attributes:
      bands: (N, T, C) float32 reflectance; NaN = no-data, and NaN at padded dates.
      dates: (N, T) float32 days; padded entries repeat the pixel's last real date.
      mask: (N, T) bool, True = real acquisition.
      band_names: C band names.
      labels: (N,) int32 classes, or None.
      class_names: K class names, or None.
    """

    bands: np.ndarray
    dates: np.ndarray
    mask: np.ndarray
    band_names: tuple[str, ...]
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None

    @property
    def num_pixels(self) -> int:
        return self.bands.shape[0]

    def as_batch(self) -> dict[str, np.ndarray]:
        """The pixel-series batch dict: ``bands``, ``dates``, ``mask`` [, ``labels``]."""
        batch = {"bands": self.bands, "dates": self.dates, "mask": self.mask}
        if self.labels is not None:
            batch["labels"] = self.labels
        return batch


def load_pixel_npz(
    path: str | os.PathLike[str],
    *,
    scl_invalid_classes: Sequence[int] = DEFAULT_SCL_INVALID_CLASSES,
) -> PixelSeries:
    """Reads pixel time series from the ``.npz`` format of :mod:`pimc_jax.data.user`.

    ``scl_invalid_classes``: the SCL classes that are gaps (``data.scl_invalid_classes``).

    Returns:
      A :class:`PixelSeries`: bands (N, T, C) float32, dates (N, T) float32 days,
      mask (N, T) bool, band names, labels (N,) int32 or None, class names or None.

    Raises:
      ValueError naming the file and the problem (missing key, wrong number of
      dimensions, band count vs band_names, dates length vs T, dates not strictly
      increasing, unknown band name, labels out of range, ...).
    """
    path = Path(path)
    where = str(path)
    arrays = load_npz_arrays(path)
    missing = [key for key in ("bands", "band_names", "dates") if key not in arrays]
    if missing:
        raise ValueError(f"{where}: missing arrays {missing} (has {sorted(arrays)})")

    bands = check_numeric(arrays["bands"], "bands", where)
    if bands.ndim != 3:
        raise ValueError(f"{where}: bands must be (N, T, C), got shape {bands.shape}")
    num_pixels, num_dates, num_bands = bands.shape
    if num_pixels == 0 or num_dates == 0:
        raise ValueError(f"{where}: bands shape {bands.shape} has no pixel or no date")
    band_names = check_band_names(arrays["band_names"], num_bands, where)
    bands = bands.astype(np.float32)
    bands = validate.to_reflectance(bands, arrays, where)
    gaps = observation_gaps(
        (num_pixels, num_dates),
        valid=arrays.get("valid"),
        scl=arrays.get("scl"),
        scl_invalid_classes=scl_invalid_classes,
        where=where,
    )
    if gaps is not None:
        bands[gaps] = np.nan

    dates = series_dates(dates_to_days(arrays["dates"], where), num_pixels, num_dates, where)

    if "mask" in arrays:
        mask = arrays["mask"]
        if mask.shape != (num_pixels, num_dates) or mask.dtype != np.bool_:
            raise ValueError(
                f"{where}: mask must be bool with shape ({num_pixels}, {num_dates}), "
                f"got {mask.dtype} {mask.shape}"
            )
        lengths = mask.sum(axis=1)
        prefix = np.arange(num_dates)[None, :] < lengths[:, None]
        if np.any(mask != prefix) or np.any(lengths == 0):
            raise ValueError(
                f"{where}: each mask row must be True for the real dates first, then False, "
                "with at least one True"
            )
    else:
        mask = np.ones((num_pixels, num_dates), bool)
        lengths = np.full((num_pixels,), num_dates)

    if np.any(~np.isfinite(dates[mask])):
        raise ValueError(f"{where}: dates are missing (NaN) at real acquisitions; give a mask")
    steps = np.diff(dates, axis=1)
    if np.any((steps <= 0) & mask[:, 1:]):
        pixel = int(np.argwhere((steps <= 0) & mask[:, 1:])[0, 0])
        raise ValueError(f"{where}: dates are not strictly increasing (pixel {pixel})")
    last_date = dates[np.arange(num_pixels), lengths - 1]
    dates = np.where(mask, dates, last_date[:, None]).astype(np.float32)
    bands = np.where(mask[:, :, None], bands, np.nan).astype(np.float32)

    labels = class_names = None
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise ValueError(f"{where}: class_names must be a 1-D array of strings")
        class_names = tuple(str(name) for name in names.tolist())
        if "labels" not in arrays:
            raise ValueError(f"{where}: class_names given without labels")
    if "labels" in arrays:
        labels = check_labels(arrays["labels"], (num_pixels,), where)
        if class_names is not None and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(
                f"{where}: labels must lie in 0..{len(class_names) - 1} "
                f"({len(class_names)} class_names), got {labels.min()}..{labels.max()}"
            )
    kept = validate.check_reflectance(bands, band_names, where, scaled="scale" in arrays)
    if len(kept) < len(band_names):  # bands without any value are dropped (warned above)
        bands = bands[..., list(kept)]
        band_names = tuple(band_names[k] for k in kept)
    validate.check_classes(labels, where)
    return PixelSeries(
        bands=bands,
        dates=dates,
        mask=mask.copy(),
        band_names=band_names,
        labels=labels,
        class_names=class_names,
    )
