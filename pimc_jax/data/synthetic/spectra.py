"""What the synthetic classes look like: each class's greenness curve over the year
(:class:`Phenology`) and the endmember spectra reflectance is mixed from, plus the small
seeded-noise helpers the synthetic generators share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from pimc_jax.data.classes import SYNTHETIC_CLASS_NAMES
from pimc_jax.indices import canonical_band_name

# 2019-01-01 as days since 1970-01-01.
YEAR_START = int(np.datetime64("2019-01-01", "D").astype(np.int64))
DAYS_IN_YEAR = 365


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
ENDMEMBERS: dict[str, tuple[float, float, float, float, float, float]] = {
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
SOIL, VEGETATION, FLOWER, WATER, IMPERVIOUS, CLOUD = range(6)


def endmember_spectra(band_names: Sequence[str]) -> np.ndarray:
    """``(6, C)`` float32 endmember spectra for ``band_names`` (Sentinel-2 names or aliases)."""
    rows = []
    for name in band_names:
        canonical = canonical_band_name(name)
        if canonical not in ENDMEMBERS:
            raise ValueError(
                f"synthetic data has no spectrum for band {name!r} (canonical {canonical!r}); "
                f"known Sentinel-2 bands: {sorted(ENDMEMBERS)}"
            )
        rows.append(ENDMEMBERS[canonical])
    return np.asarray(rows, dtype=np.float32).T


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, clipped against overflow."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def normal(rng: np.random.Generator, mean, std: float, shape) -> np.ndarray:
    """float32 Gaussian draws of ``shape``."""
    return (mean + std * rng.standard_normal(shape)).astype(np.float32)


def uniform(rng: np.random.Generator, low: float, high: float, shape) -> np.ndarray:
    """float32 uniform draws in ``[low, high)`` of ``shape``."""
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


CLASS_TABLE = _class_table()
