"""Deterministic synthetic PASTIS-like data: the default data of every command.

A synthetic patch is a square of agricultural parcels observed on a variable number of
irregular dates within one year (2019). Each parcel carries one class from
:data:`~pimc_jax.data.classes.SYNTHETIC_CLASS_NAMES`; each class has a phenology, a
greenness curve over the day of year (a double logistic: winter level, green-up, peak,
senescence, post-harvest level), plus class-specific extras (rapeseed and sunflower
flowering, grassland mowing).

Reflectance is a linear mixture of endmember spectra (bare soil, green vegetation,
yellow flowers) weighted by greenness, so NDVI/EVI/SAVI computed from the bands track the
class curve: NIR rises and red/blue/SWIR fall as a parcel greens up. On top of that:

- per-parcel jitter of the phenology (date shift, peak amplitude) and per-pixel jitter, so
  classes overlap and the task is not trivial (maize and soybean are deliberately close);
- time-invariant, class-dependent texture (row stripes with a per-parcel orientation,
  speckle) and soil brightness, so a single-date crop around a pixel carries information
  about the pixel's class, as its time series does: this shared information is what the
  pixel/image contrastive pre-training can exploit;
- field margins (hedges, roads) and some whole parcels are background (class 0);
- per-date illumination changes, Gaussian noise, clouds (bright blobs, all bands ~0.4-0.6)
  on about a fifth of the dates, and rarely a no-data (NaN) swath edge.

With ``s1=True`` a patch also carries a Sentinel-1 series consistent with the same parcels
(:func:`_sentinel1`): VV and VH backscatter of a water-cloud model driven by each pixel's
green cover and by the parcel's soil moisture (a wet-winter season plus rain events that
dry out within days), on its own irregular 6/12-day dates within the Sentinel-2 period,
with multiplicative gamma speckle of ``s1_looks`` looks; clouds do not affect it.

Everything is vectorised NumPy and seeded by ``(seed, index)``: the same arguments give the
same arrays on every machine, and patch ``i`` does not depend on how many patches are made.

:func:`make_image_classification_set` builds a EuroSAT stand-in (ten land-cover scene
classes at one date) from the same endmember spectra, hard on purpose: any season, soil and
illumination changes, haze, and sensor noise that grows at low sun.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from pimc_jax.data.classes import EUROSAT_CLASS_NAMES, SYNTHETIC_CLASS_NAMES
from pimc_jax.data.patches import Patch
from pimc_jax.indices import S1_BAND_NAMES, canonical_band_name, resolve_band_names

# 2019-01-01 as days since 1970-01-01.
_YEAR_START = int(np.datetime64("2019-01-01", "D").astype(np.int64))
_DAYS_IN_YEAR = 365
# Sentinel-2 revisit: acquisition dates are drawn from a 5-day grid when enough of it exists.
_REVISIT_DAYS = 5
# Sentinel-1 (:func:`_sentinel1`). Water-cloud model per polarisation: canopy A, B and soil
# backscatter C (dB of dry soil) + D (dB per m³/m³ of volumetric moisture).
_S1_WATER_CLOUD: dict[str, tuple[float, float, float, float]] = {
    "VV": (0.10, 0.30, -20.0, 25.0),
    "VH": (0.025, 0.20, -27.0, 20.0),
}
# The canopy descriptor (vegetation water content, kg/m²) is this times the green cover.
_S1_CANOPY_PER_COVER = 2.0
# Passes 6 days apart (12 when one is skipped); some passes are missing.
_S1_GAPS_DAYS = (6, 12)
_S1_MISSING_PASS = 0.1
_S1_INCIDENCE_DEG = (30.0, 45.0)


@dataclasses.dataclass(frozen=True)
class Phenology:
    """Greenness curve and appearance of one synthetic class.

    Greenness (green-vegetation cover fraction, in [0, 1]) at day of year ``d``::

        g(d) = winter + (peak - winter) * σ((d - green_up) / rise)
                      - (peak - after) * σ((d - senescence) / fall)

    with σ the logistic function. Each parcel adds an offset drawn uniformly in
    ``[0, cover_spread)`` to all three levels (weedy fallow, hedges); a flowering fraction
    ``flowering * exp(-½((d - flower_day) / 12)²)`` of the green cover turns yellow;
    grassland loses ``mowing`` of its cover above 0.2 at two cuts and regrows within a few
    weeks. Per parcel, ``green_up``/``senescence`` shift and the seasonal amplitude
    ``peak - winter`` scales at random.

    Appearance (time-invariant): bare soil is ``soil_brightness`` times the soil spectrum;
    reflectance is modulated by row stripes of relative ``stripe_amplitude`` and period
    ``stripe_period`` pixels (orientation per parcel) and by per-pixel ``speckle``.
    """

    name: str
    winter: float
    peak: float
    after: float
    green_up: float
    senescence: float
    rise: float
    fall: float
    soil_brightness: float
    stripe_amplitude: float
    stripe_period: float
    speckle: float
    cover_spread: float = 0.0
    flowering: float = 0.0
    flower_day: float = 0.0
    mowing: float = 0.0


SYNTHETIC_PHENOLOGY: tuple[Phenology, ...] = (
    # Background: bare/built land and field margins: low, flat, bright and heterogeneous.
    Phenology("background", 0.06, 0.10, 0.06, 120, 240, 20, 20, 1.30, 0.00, 4.0, 0.15, 0.2),
    # Winter wheat: green in winter, early peak, harvested in July.
    Phenology("wheat", 0.30, 0.85, 0.10, 80, 175, 9, 7, 1.00, 0.06, 3.0, 0.03),
    # Maize: sown late, peak in August.
    Phenology("maize", 0.06, 0.85, 0.10, 165, 255, 8, 8, 0.95, 0.10, 5.0, 0.03),
    # Rapeseed: green through winter, yellow flowering in late April, harvest in June.
    Phenology("rapeseed", 0.35, 0.80, 0.12, 60, 160, 10, 7, 1.05, 0.04, 3.0, 0.04, 0, 0.45, 115),
    # Sunflower: summer crop, yellow heads in July.
    Phenology("sunflower", 0.06, 0.75, 0.10, 145, 225, 8, 7, 1.00, 0.08, 6.0, 0.05, 0, 0.35, 200),
    # Grassland: persistent green cover, mown twice.
    Phenology(
        "grassland", 0.40, 0.78, 0.40, 85, 290, 12, 12, 0.90, 0.00, 4.0, 0.08, 0.1, mowing=0.45
    ),
    # Fallow: sparse weeds, slow and weak.
    Phenology("fallow", 0.12, 0.35, 0.15, 100, 230, 15, 15, 1.15, 0.00, 4.0, 0.10, 0.25),
    # Soybean: close to maize, a little later, lower and shorter.
    Phenology("soybean", 0.06, 0.72, 0.10, 170, 245, 8, 7, 0.95, 0.07, 4.0, 0.03),
)

# One phenology per class of the table in pimc_jax.data.classes, in label order.
assert tuple(p.name for p in SYNTHETIC_PHENOLOGY) == SYNTHETIC_CLASS_NAMES

# Endmember reflectance per canonical Sentinel-2 band:
# (soil, green vegetation, yellow flowers, water, impervious, cloud).
_ENDMEMBERS: dict[str, tuple[float, float, float, float, float, float]] = {
    "B1": (0.09, 0.030, 0.05, 0.060, 0.15, 0.56),
    "B2": (0.10, 0.035, 0.05, 0.055, 0.17, 0.56),
    "B3": (0.14, 0.080, 0.20, 0.045, 0.19, 0.54),
    "B4": (0.19, 0.035, 0.22, 0.030, 0.21, 0.53),
    "B5": (0.22, 0.120, 0.30, 0.020, 0.22, 0.53),
    "B6": (0.24, 0.300, 0.40, 0.015, 0.23, 0.52),
    "B7": (0.25, 0.380, 0.44, 0.012, 0.24, 0.52),
    "B8": (0.26, 0.420, 0.45, 0.010, 0.25, 0.51),
    "B8A": (0.27, 0.430, 0.45, 0.010, 0.25, 0.51),
    "B9": (0.27, 0.400, 0.42, 0.005, 0.20, 0.45),
    "B10": (0.01, 0.005, 0.005, 0.001, 0.01, 0.30),
    "B11": (0.32, 0.200, 0.25, 0.005, 0.28, 0.46),
    "B12": (0.27, 0.100, 0.15, 0.003, 0.25, 0.40),
}
_SOIL, _VEGETATION, _FLOWER, _WATER, _IMPERVIOUS, _CLOUD = range(6)


def _spectra(band_names: Sequence[str]) -> np.ndarray:
    """``(6, C)`` float32 endmember spectra for ``band_names`` (Sentinel-2 names or aliases)."""
    rows = []
    for name in band_names:
        canonical = canonical_band_name(name)
        if canonical not in _ENDMEMBERS:
            raise ValueError(
                f"synthetic data has no spectrum for band {name!r} (canonical {canonical!r}); "
                f"known Sentinel-2 bands: {sorted(_ENDMEMBERS)}"
            )
        rows.append(_ENDMEMBERS[canonical])
    return np.asarray(rows, dtype=np.float32).T


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def _normal(rng: np.random.Generator, mean, std: float, shape) -> np.ndarray:
    return (mean + std * rng.standard_normal(shape)).astype(np.float32)


def _uniform(rng: np.random.Generator, low: float, high: float, shape) -> np.ndarray:
    return rng.uniform(low, high, shape).astype(np.float32)


def _class_table() -> dict[str, np.ndarray]:
    """Phenology fields as float32 arrays indexed by class."""
    return {
        field.name: np.asarray(
            [getattr(p, field.name) for p in SYNTHETIC_PHENOLOGY], dtype=np.float32
        )
        for field in dataclasses.fields(Phenology)
        if field.name != "name"
    }


_CLASS_TABLE = _class_table()


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
    grid_size = _DAYS_IN_YEAR // _REVISIT_DAYS
    if num_dates <= grid_size:
        grid = int(rng.integers(_REVISIT_DAYS)) + _REVISIT_DAYS * np.arange(grid_size)
    else:
        grid = np.arange(_DAYS_IN_YEAR)
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
      s1: also generate a Sentinel-1 series (module docstring, :func:`_sentinel1`); the
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
    if not 1 <= min_dates <= max_dates <= _DAYS_IN_YEAR:
        raise ValueError(
            f"need 1 <= min_dates <= max_dates <= {_DAYS_IN_YEAR}, got min_dates={min_dates}, "
            f"max_dates={max_dates}"
        )
    if not s1_looks > 0:
        raise ValueError(f"s1_looks must be positive, got {s1_looks}")
    names = resolve_band_names(band_names)
    spectra = _spectra(names)
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
    table = {k: v[labels] for k, v in _CLASS_TABLE.items()}
    shift = _normal(rng, 0.0, 12.0, num_parcels)[parcel]
    shift += _normal(rng, 0.0, 3.0, (size, size))
    green_up = table["green_up"] + shift + _normal(rng, 0.0, 7.0, num_parcels)[parcel]
    senescence = table["senescence"] + shift + _normal(rng, 0.0, 7.0, num_parcels)[parcel]
    amplitude = _uniform(rng, 0.7, 1.05, num_parcels)[parcel]
    amplitude *= _normal(rng, 1.0, 0.06, (size, size))
    offset = _uniform(rng, 0.0, 1.0, num_parcels)[parcel] * table["cover_spread"]
    winter, after = table["winter"] + offset, table["after"] + offset
    peak = winter + (table["peak"] - table["winter"]) * amplitude
    cuts = np.sort(_normal(rng, np.asarray([150.0, 215.0]), 12.0, (num_parcels, 2)), axis=1)
    cuts = cuts[parcel]

    def cover_on(doy: np.ndarray) -> np.ndarray:
        """``(T, size, size)`` float32 green cover of each pixel on days of year ``(T, 1, 1)``."""
        greenness = (
            winter
            + (peak - winter) * _sigmoid((doy - green_up) / table["rise"])
            - (peak - after) * _sigmoid((doy - senescence) / table["fall"])
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
    brightness = _uniform(rng, 0.85, 1.15, num_parcels)[parcel] * table["soil_brightness"]
    angle = _uniform(rng, 0.0, np.pi, num_parcels)[parcel]
    phase = _uniform(rng, 0.0, 2 * np.pi, num_parcels)[parcel]
    rows, cols = np.indices((size, size), dtype=np.float32)
    stripes = table["stripe_amplitude"] * np.sin(
        2 * np.pi * (rows * np.sin(angle) + cols * np.cos(angle)) / table["stripe_period"] + phase
    )
    texture = 1.0 + stripes + table["speckle"] * _normal(rng, 0.0, 1.0, (size, size))

    soil = (brightness[..., None] * spectra[_SOIL]).astype(np.float32)  # (H, W, C)
    bands = (
        soil[None]
        + greenness[..., None] * (spectra[_VEGETATION] - soil[None])
        + flowers[..., None] * (spectra[_FLOWER] - spectra[_VEGETATION])
    )
    bands *= texture[None, :, :, None]
    # Atmosphere and sensor. Everything but the per-band noise is drawn first, so the
    # same (seed, index) gives the same clouds and no-data whatever the bands.
    illumination = _normal(rng, 1.0, 0.03, num_dates)[:, None, None, None]
    opacity = _cloud_cover(rng, num_dates, size, cloud_probability)[..., None]
    cloud_level = _uniform(rng, 0.85, 1.1, num_dates)[:, None, None, None]
    nodata = np.zeros((num_dates, size, size), dtype=bool)
    for t in np.flatnonzero(rng.random(num_dates) < nodata_probability):
        edge = int(rng.integers(size // 4, size))
        if rng.random() < 0.5:
            nodata[t, :, edge:] = True
        else:
            nodata[t, edge:, :] = True

    bands *= illumination
    bands += noise * rng.standard_normal(bands.shape, dtype=np.float32)
    bands = (1.0 - opacity) * bands + opacity * cloud_level * spectra[_CLOUD]
    bands = np.clip(bands, 0.0, 1.0).astype(np.float32)
    bands[nodata] = np.nan

    s1_fields = {}
    if s1:
        # Its own generator: the Sentinel-2 side does not change when S1 is asked for.
        s1_rng = np.random.default_rng([seed, index, 2])
        s1_days = _s1_days(s1_rng, days)
        s1_bands = _sentinel1(s1_rng, s1_days, cover_on, parcel, num_parcels, labels == 0, s1_looks)
        s1_fields = dict(
            s1_bands=s1_bands,
            s1_dates=(_YEAR_START + s1_days).astype(np.int32),
            s1_band_names=S1_BAND_NAMES,
        )
    return Patch(
        bands=bands,
        dates=(_YEAR_START + days).astype(np.int32),
        band_names=tuple(names),
        labels=labels,
        patch_id=f"synthetic-{seed}-{index}",
        fold=fold,
        **s1_fields,
    )


def _s1_days(rng: np.random.Generator, s2_days: np.ndarray) -> np.ndarray:
    """Sorted S1 days of year within ``[s2_days[0], s2_days[-1]]``: passes 6 or 12 days
    apart from a random start, a tenth of them missing (at least one day)."""
    first, last = int(s2_days[0]), int(s2_days[-1])
    day, found = first + int(rng.integers(0, _S1_GAPS_DAYS[0])), []
    while day <= last:
        if rng.random() >= _S1_MISSING_PASS:
            found.append(day)
        day += int(rng.choice(_S1_GAPS_DAYS, p=(0.75, 0.25)))
    return np.asarray(found or [first], dtype=np.int64)


def _soil_moisture(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    """``(T,)`` volumetric soil moisture (m³/m³) of the scene on days of year ``days``.

    A wet winter and a dry summer (0.16-0.32) plus rain events (a sixth of the days) that
    add 0.03-0.12 and dry out with a 4-day time constant.
    """
    span = np.arange(int(days[0]) - 30, int(days[-1]) + 1)  # a month of spin-up
    rain = np.where(rng.random(span.size) < 1 / 6, rng.uniform(0.03, 0.12, span.size), 0.0)
    wet = np.zeros(span.size)
    for t in range(span.size):
        wet[t] = (wet[t - 1] * np.exp(-1 / 4) if t else 0.0) + rain[t]
    seasonal = 0.24 + 0.08 * np.cos(2 * np.pi * (span - 15) / _DAYS_IN_YEAR)
    return np.clip(seasonal + wet, 0.05, 0.45)[days - span[0]]


def _sentinel1(
    rng: np.random.Generator,
    days: np.ndarray,
    cover_on: Callable[[np.ndarray], np.ndarray],
    parcel: np.ndarray,
    num_parcels: int,
    background: np.ndarray,
    looks: float,
) -> np.ndarray:
    """``(T1, H, W, 3)`` float32 Sentinel-1 VV, VH and VV/VH in dB on days of year ``days``.

    Water-cloud model (Attema & Ulaby 1978), per polarisation with ``(A, B, C, D)`` of
    :data:`_S1_WATER_CLOUD`, canopy ``V = 2 · green cover`` (``cover_on``) and incidence θ
    (30-45°, per date)::

        τ² = exp(−2 B V / cos θ)
        σ0 = A V cos θ (1 − τ²) + τ² · 10^((C + D · mv + r) / 10)

    with ``mv`` the soil moisture (:func:`_soil_moisture`, times a per-parcel drainage
    factor 0.8-1.2) and ``r`` a per-parcel roughness offset in dB (std 1 dB; built-up
    ``background`` pixels +3 dB). VH rises with the canopy, VV with the soil moisture and
    the canopy. Each value is multiplied by independent gamma speckle of ``looks`` looks
    (mean 1, variance 1 / looks).
    """
    doy = days.astype(np.float32)[:, None, None]
    canopy = _S1_CANOPY_PER_COVER * cover_on(doy).astype(np.float64)  # (T1, H, W)
    moisture = _soil_moisture(rng, days)[:, None, None] * rng.uniform(0.8, 1.2, num_parcels)[parcel]
    roughness = rng.normal(0.0, 1.0, num_parcels)[parcel] + 3.0 * background
    theta = np.deg2rad(rng.uniform(*_S1_INCIDENCE_DEG, days.size))[:, None, None]
    cos_theta = np.cos(theta)
    sigma = {}
    for pol, (a, b, c, d) in _S1_WATER_CLOUD.items():
        tau2 = np.exp(-2.0 * b * canopy / cos_theta)
        soil = 10.0 ** ((c + d * moisture + roughness) / 10.0)
        clean = a * canopy * cos_theta * (1.0 - tau2) + tau2 * soil
        sigma[pol] = clean * rng.gamma(looks, 1.0 / looks, clean.shape)
    vv, vh = (10.0 * np.log10(sigma[pol]) for pol in ("VV", "VH"))
    return np.stack([vv, vh, vv - vh], axis=-1).astype(np.float32)


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


# EuroSAT stand-in -----------------------------------------------------------------------

# Central wavelength (nm) of each canonical Sentinel-2 band.
_WAVELENGTH_NM: dict[str, float] = {
    "B1": 443, "B2": 490, "B3": 560, "B4": 665, "B5": 705, "B6": 740, "B7": 783,
    "B8": 842, "B8A": 865, "B9": 945, "B10": 1375, "B11": 1610, "B12": 2190,
}  # fmt: skip
# Classes of SYNTHETIC_PHENOLOGY used as land covers of the scenes.
_BARE = 0  # background: bare and built-up land
_GRASSLAND = SYNTHETIC_CLASS_NAMES.index("grassland")
_ANNUAL_CROPS = np.asarray(
    [i for i, name in enumerate(SYNTHETIC_CLASS_NAMES) if name not in ("background", "grassland")]
)
# Latitudes of the scenes (Europe) and Sentinel-2's 10:30 descending node (hour angle).
_LATITUDE_DEG = (43.0, 58.0)
_HOUR_ANGLE_DEG = -22.5
# Noise is amplified as for a sun at least 20° above the horizon (lower suns count as 20°).
_MAX_SUN_ZENITH_DEG = 70.0
# Aerosol optical depth at 550 nm (clear to hazy) and the haze's path reflectance per unit.
_AEROSOL_DEPTH = (0.05, 0.3)
_PATH_REFLECTANCE_PER_DEPTH = 0.07
# Reflectance at which photon noise equals the dark noise.
_PHOTON_NOISE_REFLECTANCE = 0.3


def _smooth_field(rng: np.random.Generator, size: int, waves: int = 5) -> np.ndarray:
    """``(size, size)`` float32 smooth random field in about [-1, 1]: a sum of plane waves."""
    rows, cols = np.indices((size, size), dtype=np.float32)
    field = np.zeros((size, size), dtype=np.float32)
    for _ in range(waves):
        frequency = rng.uniform(0.5, 3.0) * 2 * np.pi / size
        angle = rng.uniform(0, np.pi)
        field += np.cos(
            frequency * (rows * np.sin(angle) + cols * np.cos(angle)) + rng.uniform(0, 2 * np.pi)
        )
    return field / np.sqrt(waves / 2)


def _rotated_coordinates(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by a random angle about the scene centre."""
    rows, cols = np.indices((size, size), dtype=np.float32) - size / 2
    angle = rng.uniform(0, np.pi)
    return (
        rows * np.cos(angle) - cols * np.sin(angle),
        rows * np.sin(angle) + cols * np.cos(angle),
    )


def _double_logistic(day, winter, peak, after, green_up, senescence, rise, fall):
    """Greenness on ``day`` of the double logistic of :class:`Phenology`."""
    return (
        winter
        + (peak - winter) * _sigmoid((day - green_up) / rise)
        - (peak - after) * _sigmoid((day - senescence) / fall)
    )


def _class_greenness(
    rng: np.random.Generator, classes: np.ndarray, day: float
) -> tuple[np.ndarray, np.ndarray]:
    """Greenness and yellow-flower fraction on ``day`` of synthetic classes ``classes``.

    Each entry of ``classes`` (any shape) gets its own phenology jitter, as a parcel of
    :func:`make_patch`: date shift, seasonal amplitude, cover offset, grassland cut date.
    """
    t = {k: v[classes] for k, v in _CLASS_TABLE.items()}
    shift = rng.normal(0.0, 12.0, classes.shape)
    amplitude = rng.uniform(0.7, 1.05, classes.shape)
    offset = rng.uniform(0.0, 1.0, classes.shape) * t["cover_spread"]
    winter, after = t["winter"] + offset, t["after"] + offset
    peak = winter + (t["peak"] - t["winter"]) * amplitude
    g = _double_logistic(
        day,
        winter,
        peak,
        after,
        t["green_up"] + shift,
        t["senescence"] + shift,
        t["rise"],
        t["fall"],
    )
    since_cut = day - rng.normal(150.0, 12.0, classes.shape)
    regrowth = np.where(since_cut >= 0, np.exp(-np.maximum(since_cut, 0.0) / 18.0), 0.0)
    g = np.clip(g - t["mowing"] * (g - 0.2) * regrowth, 0.0, 1.0)
    flowers = g * t["flowering"] * np.exp(-0.5 * ((day - shift - t["flower_day"]) / 12.0) ** 2)
    return g, flowers


def _no_water_or_buildings(size: int) -> dict[str, np.ndarray]:
    """Water and impervious fractions (none) and roof brightness (1) of a scene."""
    return {
        "water": np.zeros((size, size)),
        "impervious": np.zeros((size, size)),
        "roof": np.ones((size, size)),
    }


def _fields(
    rng: np.random.Generator, size: int, day: float, classes: np.ndarray, cuts: int
) -> dict[str, np.ndarray]:
    """Rotated rectangular fields, each of a class drawn from ``classes``, seen on ``day``.

    Each field looks like a parcel of :func:`make_patch`: its class's phenology (jittered),
    soil brightness, row stripes (along or across the field) and speckle.
    """
    along, across = _rotated_coordinates(rng, size)
    cuts_a = np.sort(rng.uniform(-0.7 * size, 0.7 * size, cuts))
    cuts_b = np.sort(rng.uniform(-0.7 * size, 0.7 * size, cuts))
    field = np.searchsorted(cuts_a, along) * (cuts + 1) + np.searchsorted(cuts_b, across)
    crop = rng.choice(classes, size=(cuts + 1) ** 2)
    greenness, flowers = _class_greenness(rng, crop, day)
    t = {k: v[crop][field] for k, v in _CLASS_TABLE.items()}
    soil = t["soil_brightness"] * rng.uniform(0.85, 1.15, crop.shape)[field]
    across_rows = rng.integers(0, 2, crop.shape)[field] == 1
    phase = rng.uniform(0, 2 * np.pi, crop.shape)[field]
    rows = np.where(across_rows, across, along)
    stripes = t["stripe_amplitude"] * np.sin(2 * np.pi * rows / t["stripe_period"] + phase)
    texture = 1.0 + stripes + t["speckle"] * rng.standard_normal((size, size))
    cover = _no_water_or_buildings(size)
    cover.update(greenness=greenness[field], flowers=flowers[field], soil=soil, texture=texture)
    return cover


def _band(distance: np.ndarray, half_width: float) -> np.ndarray:
    """Cover fraction of a linear feature (road, river): mixed pixels along its edges."""
    return np.clip(half_width + 0.5 - np.abs(distance), 0.0, 1.0)


def _crowns(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    """Multiplicative tree-crown and shadow texture: noise smoothed over about a pixel."""
    noise = rng.standard_normal((size + 4, size + 4))
    taps = np.exp(-0.5 * (np.arange(-2, 3) / 0.8) ** 2)
    smooth = sum(w * noise[k : k + size, :] for k, w in enumerate(taps / taps.sum()))
    smooth = sum(w * smooth[:, k : k + size] for k, w in enumerate(taps / taps.sum()))
    return 1.0 + amplitude * smooth / smooth.std()


def _scene_cover(
    rng: np.random.Generator, label: int, size: int, day: float
) -> dict[str, np.ndarray]:
    """Cover of one scene seen on day of year ``day``: ``(size, size)`` arrays.

    Keys: ``greenness`` and ``flowers`` (fractions of the land), ``soil`` (bare-soil
    brightness), ``texture`` (multiplies land reflectance: rows, crowns, shadows),
    ``water`` and ``impervious`` (fractions), ``roof`` (impervious brightness).
    """
    name = EUROSAT_CLASS_NAMES[label]
    along, across = _rotated_coordinates(rng, size)
    # Most scenes lie among crop fields at any growth stage (bare soil in winter).
    cover = _fields(rng, size, day, _ANNUAL_CROPS, int(rng.integers(1, 4)))
    noise = rng.standard_normal((size, size))
    if name == "Forest":
        # Evergreen/deciduous mix (leaf-off in winter), dark shaded canopy of crowns.
        evergreen = np.clip(rng.uniform(0, 1) + 0.3 * _smooth_field(rng, size, 8), 0.0, 1.0)
        deciduous = _double_logistic(
            day, 0.15, rng.uniform(0.75, 0.95), 0.2, rng.normal(115, 10), rng.normal(290, 10), 9, 9
        )
        cover["greenness"] = evergreen * rng.uniform(0.7, 0.9) + (1 - evergreen) * deciduous
        cover["greenness"] = cover["greenness"] + 0.05 * noise
        cover["flowers"] = np.zeros((size, size))
        cover["soil"] = np.full((size, size), rng.uniform(0.6, 0.9))  # litter
        cover["texture"] = rng.uniform(0.65, 0.9) * _crowns(rng, size, 0.2)
    elif name == "HerbaceousVegetation":
        # Natural grass and scrub with dry patches: heterogeneous, browns in summer.
        grass, _ = _class_greenness(rng, np.asarray(_GRASSLAND), day)
        scrub = _double_logistic(day, 0.2, rng.uniform(0.5, 0.8), 0.25, 100, 200, 15, 20)
        mix = 0.5 + 0.5 * _smooth_field(rng, size, 8)
        cover["greenness"] = mix * grass + (1 - mix) * scrub + 0.08 * _smooth_field(rng, size, 8)
        cover["flowers"] = np.zeros((size, size))
        cover["soil"] = np.full((size, size), rng.uniform(0.9, 1.2))
        cover["texture"] = 1 + 0.08 * noise
    elif name == "Highway":
        cover["impervious"] = _band(across - rng.uniform(-size / 4, size / 4), rng.uniform(0.4, 3))
        cover["roof"] = np.full((size, size), rng.uniform(0.7, 1.1))
    elif name == "Industrial":
        # Roofs and yards on bare, built-up land (the background class of the patches).
        cover = _fields(rng, size, day, np.asarray([_BARE]), int(rng.integers(0, 3)))
        for _ in range(int(rng.integers(3, 7))):
            r0, c0 = rng.integers(0, size, 2)
            h, w = rng.integers(size // 8, size // 2, 2)
            cover["impervious"][r0 : r0 + h, c0 : c0 + w] = 1.0
            cover["roof"][r0 : r0 + h, c0 : c0 + w] = rng.uniform(0.6, 1.5)
    elif name == "Pasture":
        # Grassland parcels, each mown or grazed at its own dates.
        cover = _fields(rng, size, day, np.asarray([_GRASSLAND]), int(rng.integers(0, 3)))
    elif name == "PermanentCrop":
        # Orchards and vineyards: rows of deciduous crowns over grass or bare inter-rows.
        dots = np.cos(2 * np.pi * along / rng.uniform(3.0, 6.0)) * np.cos(
            2 * np.pi * across / rng.uniform(3.0, 8.0)
        )
        crowns = _double_logistic(day, 0.1, rng.uniform(0.6, 0.9), 0.15, 110, 285, 10, 10)
        cover["greenness"] = np.where(dots > 0.3, crowns, rng.uniform(0.05, 0.5))
        cover["flowers"] = np.zeros((size, size))
        cover["texture"] = 1 + 0.05 * noise
    elif name == "Residential":
        period = rng.uniform(5.0, 9.0)
        houses = (np.mod(along, period) < period / 2) & (np.mod(across, period) < period / 2)
        cover["impervious"] = houses * rng.uniform(0.4, 1.0, (size, size))
        cover["roof"] = np.full((size, size), rng.uniform(0.7, 1.2))
        gardens = _double_logistic(day, 0.35, 0.7, 0.35, 100, 280, 15, 15)
        cover["greenness"] = gardens + 0.15 * _smooth_field(rng, size)
        cover["flowers"] = np.zeros((size, size))
    elif name == "River":
        course = rng.uniform(-size / 6, size / 6) + (size / 8) * np.sin(
            2 * np.pi * along / rng.uniform(size / 2, 2 * size) + rng.uniform(0, 2 * np.pi)
        )
        cover["water"] = _band(across - course, rng.uniform(1.0, 5.0))
    elif name == "SeaLake":
        shore = rng.uniform(-0.2, 0.5) * size + 2 * _smooth_field(rng, size, 3)
        cover["water"] = np.clip(shore - across + 0.5, 0.0, 1.0)
    cover["greenness"] = np.clip(cover["greenness"], 0.0, 1.0)
    return cover


def _cos_sun_zenith(latitude_deg: float, day: float) -> float:
    """Cosine of the solar zenith angle at Sentinel-2's overpass, floored at 70°."""
    declination = np.deg2rad(23.44) * np.sin(2 * np.pi * (day - 81) / _DAYS_IN_YEAR)
    latitude, hour = np.deg2rad(latitude_deg), np.deg2rad(_HOUR_ANGLE_DEG)
    cos_zenith = np.sin(latitude) * np.sin(declination) + np.cos(latitude) * np.cos(
        declination
    ) * np.cos(hour)
    return float(max(cos_zenith, np.cos(np.deg2rad(_MAX_SUN_ZENITH_DEG))))


def make_image_classification_set(
    num_images: int,
    seed: int = 0,
    size: int = 64,
    band_names: str | Sequence[str] = "eurosat",
    noise: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Synthetic EuroSAT stand-in: single-date land-cover scenes of the EuroSAT classes.

    Each scene mixes the endmember spectra of :func:`make_patch` (soil, green vegetation,
    yellow flowers, water, impervious) in a class-specific layout: crop fields (the parcels
    of :func:`make_patch`: phenology, soil brightness, row stripes, speckle), forest crowns,
    natural grass and scrub, a road, roofs on bare land, grassland parcels, orchard grids,
    houses with gardens, a river, a lake shore. Roads, rivers and lakes lie among crop
    fields. Labels are balanced (``i % 10``, shuffled by ``seed``).

    The set is hard on purpose, so that the mean spectrum of a scene does not give its class
    and a randomly initialised encoder with a linear probe stays far from perfect:

    - one acquisition date per scene, anywhere in the year, and every vegetated cover
      follows its phenology (crops are bare soil in winter, deciduous forest and orchards
      leaf-off, grass mown or browning): crop, pasture, herbaceous, orchard and forest
      scenes overlap in spectrum;
    - soil moisture and colour (brightness ±25 %, a red/grey tilt) and scene-wide
      illumination (slope, sun and view geometry: ±25 %) vary from scene to scene;
    - aerosol haze (optical depth 0.05-0.3 at 550 nm) adds path reflectance, most in blue;
    - sensor noise: ``noise`` is the dark noise under an overhead sun and a clear sky;
      photon noise adds to it in bright pixels, and both are amplified in reflectance as
      less light arrives: low sun (latitudes 43-58° N at the 10:30 overpass, zenith capped
      at 70°) and a longer path through the atmosphere (Rayleigh and aerosol extinction,
      worst in blue). Winter scenes are several times noisier than summer ones, far more
      than with the real MSI;
    - mixed pixels along roads (some narrower than a pixel), rivers and shores.

    Args:
      num_images: number of scenes.
      seed: data-set seed; scene ``i`` is drawn from a generator seeded by ``(seed, i)``
        given its label, so the same arguments give the same arrays.
      size: scene height and width in pixels.
      band_names: band names or a table name (``"eurosat"`` 13 bands, or e.g.
        ``("B4", "B3", "B2")`` for RGB).
      noise: standard deviation of the additive Gaussian reflectance noise of a dark
        target under an overhead sun and a clear sky (it grows as described above).

    Returns:
      ``(images, labels, class_names)``: ``(N, size, size, C)`` float32 reflectance in
      [0, 1], ``(N,)`` int32 in ``[0, 10)``, and the 10 class names
      (:data:`~pimc_jax.data.classes.EUROSAT_CLASS_NAMES`).
    """
    if num_images < 0 or size < 4:
        raise ValueError(f"need num_images >= 0 and size >= 4, got {num_images} and {size}")
    names = resolve_band_names(band_names)
    spectra = _spectra(names).astype(np.float64)
    wavelength_um = np.asarray([_WAVELENGTH_NM[canonical_band_name(n)] for n in names]) / 1000
    num_classes = len(EUROSAT_CLASS_NAMES)
    labels = np.random.default_rng(seed).permutation(np.arange(num_images) % num_classes)
    images = np.empty((num_images, size, size, len(names)), dtype=np.float32)
    for i, label in enumerate(labels):
        rng = np.random.default_rng([seed, i, 1])
        day = rng.uniform(0.0, _DAYS_IN_YEAR)
        cover = _scene_cover(rng, int(label), size, day)
        # Soil moisture (darker when wet) and colour (iron oxides redden, organic matter greys).
        soil_tint = rng.uniform(0.75, 1.25) * (
            1 + rng.uniform(-0.3, 0.3) * (wavelength_um - 0.8) / 0.8
        )
        soil = cover["soil"][..., None] * spectra[_SOIL] * soil_tint
        land = (
            soil
            + cover["greenness"][..., None] * (spectra[_VEGETATION] - soil)
            + cover["flowers"][..., None] * (spectra[_FLOWER] - spectra[_VEGETATION])
        ) * cover["texture"][..., None]
        water = cover["water"][..., None]
        impervious = np.clip(cover["impervious"], 0.0, 1.0 - cover["water"])[..., None]
        scene = (
            (1.0 - water - impervious) * land
            + water * spectra[_WATER]
            + impervious * cover["roof"][..., None] * spectra[_IMPERVIOUS]
        )
        # Illumination: slope, view/sun geometry (BRDF) and calibration, scene-wide.
        scene *= rng.uniform(0.75, 1.25)
        # Atmosphere: Rayleigh + aerosol optical depth; the aerosol adds path reflectance.
        cos_zenith = _cos_sun_zenith(rng.uniform(*_LATITUDE_DEG), day)
        aerosol = rng.uniform(*_AEROSOL_DEPTH) * (wavelength_um / 0.55) ** -1.3
        depth = 0.0088 * wavelength_um**-4.05 + aerosol
        scene = scene + _PATH_REFLECTANCE_PER_DEPTH * aerosol * (1.0 - scene)
        # Sensor: dark + photon noise, amplified in reflectance when less light arrives.
        attenuation = np.exp(depth * (1.0 / cos_zenith - 1.0)) / cos_zenith
        photon = np.clip(scene, 0.0, 1.0) / _PHOTON_NOISE_REFLECTANCE
        std = noise * attenuation * np.sqrt(1.0 + photon)
        scene = scene + std * rng.standard_normal(scene.shape)
        images[i] = np.clip(scene, 0.0, 1.0)
    return images, labels.astype(np.int32), EUROSAT_CLASS_NAMES
