"""The one in-memory form every SITS source yields: a :class:`Patch`, and its sharding.

Synthetic patches, PASTIS, user patch folders and anything else that feeds
pre-training or the pixel evaluations produce ``Patch`` objects; pair sampling
(:mod:`pimc_jax.data.pairs`) and the evaluations only ever see this type.
:func:`shard_patches` splits a sequence of patches between hosts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Patch:
    """One satellite image time series patch.

    Attributes:
      bands: ``(T, H, W, C)`` band values as stored: either float32 surface reflectance,
        nominally in [0, 1], with NaN for no-data, or integer digital numbers (PASTIS
        keeps its int16 values: a quarter of the memory) with ``reflectance_scale``
        digital numbers per unit of reflectance. Read reflectance with
        :meth:`reflectance`, which converts only the part asked for.
      dates: ``(T,)`` int32 acquisition dates as days since 1970-01-01,
        strictly increasing.
      band_names: ``C`` band names, e.g. ``("B2", "B3", ...)``; indices are looked
        up by name (see :mod:`pimc_jax.indices`).
      labels: ``(H, W)`` int32 semantic class per pixel, or ``None``.
      patch_id: identifier of the patch in its source.
      fold: cross-validation fold (PASTIS: 1..5), or 0 when the source has none.
      reflectance_scale: ``reflectance = bands / reflectance_scale`` (1 for float
        reflectance, 10 000 for Sentinel-2 L2A digital numbers).
      crs: the coordinate reference system of the pixel grid, as rasterio writes it
        (``"EPSG:32631"``, or WKT), or ``None`` when the source has no georeference.
      transform: the grid's affine transform ``(a, b, c, d, e, f)``: pixel (row, col)
        has its upper-left corner at ``x = a·col + b·row + c``, ``y = d·col + e·row + f``
        (rasterio's ``Affine`` order), or ``None``. Kept so that per-pixel outputs can be
        written back onto the same grid (:func:`pimc_jax.data.geotiff.write_patch_geotiff`).
      s1_bands: optional second sensor, Sentinel-1: ``(T1, H, W, C1)`` float32 backscatter
        in dB on the same pixel grid (NaN = no-data), or ``None``. ``T1 = 0`` means the
        series was asked for but the source has none for this patch (:attr:`has_s1`).
      s1_dates: ``(T1,)`` int32 days since 1970-01-01, strictly increasing, their own
        dates (not aligned with ``dates``); given exactly when ``s1_bands`` is.
      s1_band_names: ``C1`` channel names, e.g. ``("VV", "VH", "VV/VH")``
        (:data:`pimc_jax.indices.S1_BAND_NAMES`); ``()`` without S1.
    """

    bands: np.ndarray
    dates: np.ndarray
    band_names: tuple[str, ...]
    labels: np.ndarray | None = None
    patch_id: str = ""
    fold: int = 0
    reflectance_scale: float = 1.0
    crs: str | None = None
    transform: tuple[float, ...] | None = None
    s1_bands: np.ndarray | None = None
    s1_dates: np.ndarray | None = None
    s1_band_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.reflectance_scale <= 0:
            raise ValueError(
                f"Patch {self.patch_id!r}: reflectance_scale must be positive, got "
                f"{self.reflectance_scale}"
            )
        if self.bands.ndim != 4:
            raise ValueError(
                f"Patch {self.patch_id!r}: bands must be (T, H, W, C), got shape {self.bands.shape}"
            )
        height, width = self.bands.shape[1:3]
        _check_series(
            f"Patch {self.patch_id!r}",
            self.bands,
            self.dates,
            self.band_names,
            ("bands", "dates", "bands", "band names"),
        )
        if self.labels is not None and self.labels.shape != (height, width):
            raise ValueError(
                f"Patch {self.patch_id!r}: labels must have shape ({height}, {width}), "
                f"got {self.labels.shape}"
            )
        if self.transform is not None and (
            len(self.transform) != 6 or not all(np.isfinite(self.transform))
        ):
            raise ValueError(
                f"Patch {self.patch_id!r}: transform must be 6 finite numbers (a, b, c, d, e, f), "
                f"got {self.transform}"
            )
        self._check_s1(height, width)

    def _check_s1(self, height: int, width: int) -> None:
        where = f"Patch {self.patch_id!r}"
        if self.s1_bands is None:
            if self.s1_dates is not None or self.s1_band_names:
                raise ValueError(f"{where}: s1_dates or s1_band_names given without s1_bands")
            return
        if self.s1_dates is None:
            raise ValueError(f"{where}: s1_bands given without s1_dates")
        if self.s1_bands.ndim != 4 or self.s1_bands.shape[1:3] != (height, width):
            raise ValueError(
                f"{where}: s1_bands must be (T1, {height}, {width}, C1) on the bands' grid, "
                f"got shape {self.s1_bands.shape}"
            )
        if not np.issubdtype(self.s1_bands.dtype, np.floating):
            raise ValueError(
                f"{where}: s1_bands must be float dB values, got {self.s1_bands.dtype}"
            )
        _check_series(
            where,
            self.s1_bands,
            self.s1_dates,
            self.s1_band_names,
            ("s1_bands", "s1_dates", "S1 channels", "s1_band_names"),
        )

    def reflectance(self, index: Any = ...) -> np.ndarray:
        """``bands[index]`` as float32 reflectance (a view when already reflectance).

        Args:
          index: any NumPy index into the ``(T, H, W, C)`` array, e.g.
            ``np.s_[:, rows, cols, :]``; the whole patch by default.
        """
        values = self.bands[index]
        if self.reflectance_scale == 1.0 and values.dtype == np.float32:
            return values
        return values.astype(np.float32) / np.float32(self.reflectance_scale)

    @property
    def has_s1(self) -> bool:
        """Whether the patch holds a Sentinel-1 series with at least one date."""
        return self.s1_bands is not None and self.s1_bands.shape[0] > 0

    @property
    def num_dates(self) -> int:
        return self.bands.shape[0]

    @property
    def height(self) -> int:
        return self.bands.shape[1]

    @property
    def width(self) -> int:
        return self.bands.shape[2]

    def window(self, window: tuple[int, int, int, int]) -> Patch:
        """The patch restricted to ``window`` ``(row, col, rows, cols)`` (clipped at the
        edge): its pixels, labels and Sentinel-1 pixels, the transform moved to its corner."""
        row, col, rows, cols = (max(int(v), 0) for v in window)
        region = np.s_[row : row + rows, col : col + cols]
        transform = None if self.transform is None else shift_transform(self.transform, row, col)
        return dataclasses.replace(
            self,
            bands=self.bands[(slice(None), *region)],
            labels=None if self.labels is None else self.labels[region],
            s1_bands=None if self.s1_bands is None else self.s1_bands[(slice(None), *region)],
            transform=transform,
        )


def shift_transform(transform: Sequence[float], row: int, col: int) -> tuple[float, ...]:
    """The affine transform ``(a, b, c, d, e, f)`` of the pixel grid that starts at pixel
    ``(row, col)`` of ``transform``'s grid (its origin moved, its pixel size kept)."""
    a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])
    return (a, b, c + col * a + row * b, d, e, f + col * d + row * e)


def _check_series(
    where: str,
    values: np.ndarray,
    dates: np.ndarray,
    names: tuple[str, ...],
    words: tuple[str, str, str, str],
) -> None:
    """Checks one sensor's ``(T, H, W, C)`` values against its dates and channel names.

    ``words``: how messages call the values, the dates, the channels and their names.
    """
    values_key, dates_key, channels, names_key = words
    num_dates, num_channels = values.shape[0], values.shape[-1]
    if dates.shape != (num_dates,):
        raise ValueError(
            f"{where}: {dates_key} must have shape ({num_dates},) to match {values_key} "
            f"{values.shape}, got {dates.shape}"
        )
    if len(names) != num_channels:
        raise ValueError(f"{where}: {num_channels} {channels} but {len(names)} {names_key} {names}")
    if num_dates > 1 and not np.all(np.diff(dates) > 0):
        raise ValueError(f"{where}: {dates_key} must be strictly increasing")


def series_dates(dates: np.ndarray, num_series: int, num_dates: int, where: str) -> np.ndarray:
    """``(T,)`` dates shared by all series, or ``(N, T)``, as ``(N, T)`` (a broadcast view).

    Raises:
      ValueError: one line, naming ``where``, when ``dates`` fits neither shape.
    """
    dates = np.asarray(dates)
    if dates.shape == (num_dates,):
        return np.broadcast_to(dates, (num_series, num_dates))
    if dates.shape != (num_series, num_dates):
        count = ""
        if dates.ndim == 1:
            count = f": it has {dates.shape[0]} dates but the bands have T = {num_dates}"
        raise ValueError(
            f"{where}: dates must have shape ({num_dates},) or ({num_series}, {num_dates}) "
            f"to match the bands, got {dates.shape}{count}"
        )
    return dates


def shard_patches(
    patches: Sequence[Patch], process_index: int, process_count: int
) -> Sequence[Patch]:
    """Patches of host ``process_index`` out of ``process_count``: every ``count``-th one.

    The shards are disjoint and cover all patches; their sizes differ by at most one. A
    slice of ``patches``, so a lazy sequence stays lazy.
    """
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"need 0 <= process_index < process_count, got {process_index} and {process_count}"
        )
    return patches[process_index::process_count]
