"""Synthetic Sentinel-2 patches: parcels of the synthetic classes observed on irregular
dates of one year, with texture, clouds, noise and no-data (:func:`make_patch`,
:func:`make_patches`); optionally with Sentinel-1 on the same parcels
(:mod:`pimc_jax.data.synthetic.sentinel1`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pimc_jax.data.classes import SYNTHETIC_CLASS_NAMES
from pimc_jax.data.patches import Patch
from pimc_jax.data.synthetic.sentinel1 import s1_acquisition_days, sentinel1_series
from pimc_jax.data.synthetic.spectra import (
    CLASS_TABLE,
    CLOUD,
    DAYS_IN_YEAR,
    FLOWER,
    SOIL,
    VEGETATION,
    YEAR_START,
    endmember_spectra,
    normal,
    sigmoid,
    uniform,
)
from pimc_jax.indices import S1_BAND_NAMES, resolve_band_names

# Sentinel-2 revisit: acquisition dates are drawn from a 5-day grid when enough of it exists.
_REVISIT_DAYS = 5


def _voronoi_parcels(rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
    """``(size, size)`` int parcel ids from a Voronoi tessellation, and the parcel count."""
    area = size * size
    num_parcels = int(rng.integers(max(2, area // 160), max(3, area // 60) + 1))
    seeds = rng.uniform(0, size, size=(num_parcels, 2)).astype(np.float32)
    # Anisotropic distances make elongated fields rather than round cells.
    stretch = rng.uniform(0.6, 1.6)
    rows, cols = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    rows, cols = rows.T, cols.T
    distance = (rows[None] - seeds[:, 0, None, None]) ** 2 * stretch + (
        cols[None] - seeds[:, 1, None, None]
    ) ** 2 / stretch
    return np.argmin(distance, axis=0), num_parcels


def _acquisition_days(rng: np.random.Generator, min_dates: int, max_dates: int) -> np.ndarray:
    """Sorted unique days of year in [0, 365) on a 5-day grid (daily when too many dates)."""
    num_dates = int(rng.integers(min_dates, max_dates + 1))
    grid_size = DAYS_IN_YEAR // _REVISIT_DAYS
    if num_dates <= grid_size:
        grid = int(rng.integers(_REVISIT_DAYS)) + _REVISIT_DAYS * np.arange(grid_size)
    else:
        grid = np.arange(DAYS_IN_YEAR)
    return np.sort(rng.choice(grid, size=num_dates, replace=False))


def _cloud_cover(
    rng: np.random.Generator, num_dates: int, size: int, cloud_probability: float
) -> np.ndarray:
    """``(T, size, size)`` float32 cloud opacity in [0, 1]: a few Gaussian blobs on some dates."""
    opacity = np.zeros((num_dates, size, size), dtype=np.float32)
    cloudy = np.flatnonzero(rng.random(num_dates) < cloud_probability)
    grid = np.arange(size, dtype=np.float32)
    for t in cloudy:
        num_blobs = int(rng.integers(1, 4))
        centers = rng.uniform(-0.2 * size, 1.2 * size, size=(num_blobs, 2)).astype(np.float32)
        radii = rng.uniform(size / 8, size / 2.5, size=num_blobs).astype(np.float32)
        strength = rng.uniform(0.7, 1.6, size=num_blobs).astype(np.float32)
        d2 = (grid[None, :, None] - centers[:, 0, None, None]) ** 2 + (
            grid[None, None, :] - centers[:, 1, None, None]
        ) ** 2
        blobs = strength[:, None, None] * np.exp(-d2 / (2 * radii[:, None, None] ** 2))
        opacity[t] = np.clip(blobs.sum(axis=0), 0.0, 1.0)
    return opacity


def make_patch(
    seed: int,
    index: int,
    *,
    size: int = 32,
    min_dates: int = 20,
    max_dates: int = 40,
    num_classes: int = len(SYNTHETIC_CLASS_NAMES),
    band_names: str | Sequence[str] = "pastis",
    cloud_probability: float = 0.2,
    nodata_probability: float = 0.02,
    noise: float = 0.01,
    fold: int = 0,
    s1: bool = False,
    s1_looks: float = 5.0,
) -> Patch:
    """Generates synthetic patch ``index`` of the data set seeded by ``seed``.

    Args:
      seed: data-set seed; together with ``index`` it fully determines the patch.
      index: patch number within the data set.
      size: patch height and width in pixels.
      min_dates: fewest acquisition dates; the count is drawn uniformly in
        ``[min_dates, max_dates]``.
      max_dates: most acquisition dates (at most 365).
      num_classes: classes used, the first ``num_classes`` of
        :data:`~pimc_jax.data.classes.SYNTHETIC_CLASS_NAMES`
        (2 to 8); class 0 is background.
      band_names: band names or a table name of :data:`pimc_jax.indices.BAND_TABLES`;
        Sentinel-2 bands B1..B12, B8A (or the aliases BLUE/GREEN/RED/NIR).
      cloud_probability: chance that a date carries clouds.
      nodata_probability: chance that a date loses a swath edge to no-data (NaN).
      noise: standard deviation of the additive Gaussian reflectance noise.
      fold: fold stored in the patch.
      s1: also generate a Sentinel-1 series (:func:`~.sentinel1.sentinel1_series`); the
        Sentinel-2 bands, dates and labels are the same with or without it.
      s1_looks: equivalent number of looks L of the S1 speckle (gamma, mean 1, variance
        1/L: over a homogeneous area, mean / std of the linear intensity is √L).

    Returns:
      A :class:`Patch` with ``bands`` ``(T, size, size, C)`` float32 reflectance in [0, 1]
      (NaN on no-data), ``dates`` ``(T,)`` int32 days since 1970-01-01 within 2019, strictly
      increasing, ``labels`` ``(size, size)`` int32 in ``[0, num_classes)``; with ``s1``
      also ``s1_bands`` ``(T1, size, size, 3)`` float32 dB (VV, VH, VV/VH = VV − VH),
      ``s1_dates`` ``(T1,)`` int32 strictly increasing within ``[dates[0], dates[-1]]``,
      ``s1_band_names`` :data:`~pimc_jax.indices.S1_BAND_NAMES`.
    """
    if not 2 <= num_classes <= len(SYNTHETIC_CLASS_NAMES):
        raise ValueError(
            f"num_classes must be in [2, {len(SYNTHETIC_CLASS_NAMES)}], got {num_classes}"
        )
    if size < 2:
        raise ValueError(f"size must be at least 2 pixels, got {size}")
    if not 1 <= min_dates <= max_dates <= DAYS_IN_YEAR:
        raise ValueError(
            f"need 1 <= min_dates <= max_dates <= {DAYS_IN_YEAR}, got min_dates={min_dates}, "
            f"max_dates={max_dates}"
        )
    if not s1_looks > 0:
        raise ValueError(f"s1_looks must be positive, got {s1_looks}")
    names = resolve_band_names(band_names)
    spectra = endmember_spectra(names)
    rng = np.random.default_rng([seed, index])

    # Parcels, their classes, and field margins as background.
    parcel, num_parcels = _voronoi_parcels(rng, size)
    parcel_class = rng.integers(1, num_classes, size=num_parcels)
    parcel_class[rng.random(num_parcels) < 0.15] = 0
    labels = parcel_class[parcel]
    margin = np.zeros((size, size), dtype=bool)
    margin[:, :-1] |= parcel[:, :-1] != parcel[:, 1:]
    margin[:-1, :] |= parcel[:-1, :] != parcel[1:, :]
    labels[margin] = 0
    labels = labels.astype(np.int32)
    # Margins are their own background parcel in everything below.
    parcel = np.where(margin, num_parcels, parcel)
    num_parcels += 1

    # Per-parcel and per-pixel phenology jitter.
    table = {k: v[labels] for k, v in CLASS_TABLE.items()}
    shift = normal(rng, 0.0, 12.0, num_parcels)[parcel]
    shift += normal(rng, 0.0, 3.0, (size, size))
    green_up = table["green_up"] + shift + normal(rng, 0.0, 7.0, num_parcels)[parcel]
    senescence = table["senescence"] + shift + normal(rng, 0.0, 7.0, num_parcels)[parcel]
    amplitude = uniform(rng, 0.7, 1.05, num_parcels)[parcel]
    amplitude *= normal(rng, 1.0, 0.06, (size, size))
    offset = uniform(rng, 0.0, 1.0, num_parcels)[parcel] * table["cover_spread"]
    winter, after = table["winter"] + offset, table["after"] + offset
    peak = winter + (table["peak"] - table["winter"]) * amplitude
    cuts = np.sort(normal(rng, np.asarray([150.0, 215.0]), 12.0, (num_parcels, 2)), axis=1)
    cuts = cuts[parcel]

    def cover_on(doy: np.ndarray) -> np.ndarray:
        """``(T, size, size)`` float32 green cover of each pixel on days of year ``(T, 1, 1)``."""
        greenness = (
            winter
            + (peak - winter) * sigmoid((doy - green_up) / table["rise"])
            - (peak - after) * sigmoid((doy - senescence) / table["fall"])
        )
        for cut in (cuts[..., 0], cuts[..., 1]):
            since = doy - cut
            regrowth = np.where(since >= 0, np.exp(-np.maximum(since, 0.0) / 18.0), 0.0)
            greenness = greenness - table["mowing"] * (greenness - 0.2) * regrowth
        return np.clip(greenness, 0.0, 1.0).astype(np.float32)

    days = _acquisition_days(rng, min_dates, max_dates)
    num_dates = days.size
    doy = days.astype(np.float32)[:, None, None]
    greenness = cover_on(doy)
    flowers = table["flowering"] * np.exp(-0.5 * ((doy - table["flower_day"]) / 12.0) ** 2)
    flowers = (greenness * flowers).astype(np.float32)

    # Time-invariant appearance: soil brightness, row stripes and speckle.
    brightness = uniform(rng, 0.85, 1.15, num_parcels)[parcel] * table["soil_brightness"]
    angle = uniform(rng, 0.0, np.pi, num_parcels)[parcel]
    phase = uniform(rng, 0.0, 2 * np.pi, num_parcels)[parcel]
    rows, cols = np.indices((size, size), dtype=np.float32)
    stripes = table["stripe_amplitude"] * np.sin(
        2 * np.pi * (rows * np.sin(angle) + cols * np.cos(angle)) / table["stripe_period"] + phase
    )
    texture = 1.0 + stripes + table["speckle"] * normal(rng, 0.0, 1.0, (size, size))

    soil = (brightness[..., None] * spectra[SOIL]).astype(np.float32)  # (H, W, C)
    bands = (
        soil[None]
        + greenness[..., None] * (spectra[VEGETATION] - soil[None])
        + flowers[..., None] * (spectra[FLOWER] - spectra[VEGETATION])
    )
    bands *= texture[None, :, :, None]
    # Atmosphere and sensor. Everything but the per-band noise is drawn first, so the
    # same (seed, index) gives the same clouds and no-data whatever the bands.
    illumination = normal(rng, 1.0, 0.03, num_dates)[:, None, None, None]
    opacity = _cloud_cover(rng, num_dates, size, cloud_probability)[..., None]
    cloud_level = uniform(rng, 0.85, 1.1, num_dates)[:, None, None, None]
    nodata = np.zeros((num_dates, size, size), dtype=bool)
    for t in np.flatnonzero(rng.random(num_dates) < nodata_probability):
        edge = int(rng.integers(size // 4, size))
        if rng.random() < 0.5:
            nodata[t, :, edge:] = True
        else:
            nodata[t, edge:, :] = True

    bands *= illumination
    bands += noise * rng.standard_normal(bands.shape, dtype=np.float32)
    bands = (1.0 - opacity) * bands + opacity * cloud_level * spectra[CLOUD]
    bands = np.clip(bands, 0.0, 1.0).astype(np.float32)
    bands[nodata] = np.nan

    s1_fields = {}
    if s1:
        # Its own generator: the Sentinel-2 side does not change when S1 is asked for.
        s1_rng = np.random.default_rng([seed, index, 2])
        s1_days = s1_acquisition_days(s1_rng, days)
        s1_bands = sentinel1_series(
            s1_rng, s1_days, cover_on, parcel, num_parcels, labels == 0, s1_looks
        )
        s1_fields = dict(
            s1_bands=s1_bands,
            s1_dates=(YEAR_START + s1_days).astype(np.int32),
            s1_band_names=S1_BAND_NAMES,
        )
    return Patch(
        bands=bands,
        dates=(YEAR_START + days).astype(np.int32),
        band_names=tuple(names),
        labels=labels,
        patch_id=f"synthetic-{seed}-{index}",
        fold=fold,
        **s1_fields,
    )


def make_patches(num_patches: int, seed: int = 0, *, folds: int = 0, **kwargs) -> list[Patch]:
    """Generates patches ``0..num_patches-1`` of the synthetic data set ``seed``.

    Args:
      num_patches: number of patches.
      seed: data-set seed.
      folds: with ``folds > 0``, patch ``i`` gets fold ``i % folds + 1`` (round robin over
        ``1..folds``, as PASTIS's five folds for ``folds=5``); with 0 every patch has
        fold 0.
      **kwargs: forwarded to :func:`make_patch` (``size``, ``min_dates``, ...).
    """
    if num_patches < 0 or folds < 0:
        raise ValueError(f"num_patches and folds must be >= 0, got {num_patches} and {folds}")
    return [
        make_patch(seed, i, fold=(i % folds + 1) if folds else 0, **kwargs)
        for i in range(num_patches)
    ]
