"""A synthetic Sen1Floods11 stand-in: flood chips whose water rises between dates.

Each scene is a valley: a terrain of smooth hills cut by a meandering river (sometimes a
lake), with land cover (vegetation, bare soil, built-up blocks) as smooth random fields.
Water is where the terrain lies below the water level; the level rises over the scene's
dates, from the permanent river (a few % of the scene) to the flood's extent on the last
date (the event; a fifth of the scenes stay unflooded). What each sensor sees:

* **Sentinel-2** (the 13 L1C bands of :data:`~pimc_jax.data.sen1floods11.S2_BANDS`,
  reflectance): land is a mixture of the vegetation, soil and impervious endmembers
  (:data:`~pimc_jax.data.synthetic.spectra.ENDMEMBERS`), water the water endmember made
  turbid with soil (floodwater more than the river; seen in the visible, hardly in the
  infrared); shallow water near the flood's edge
  lets the cover below show through. Water is dark in NIR and SWIR, so bright in the
  water indices (NDWI, MNDWI). Clouds (bright, flat spectra) and their shadows cover
  parts of some dates; per-date illumination and Gaussian noise.
* **Sentinel-1** (VV, VH, VV − VH in dB): open water is dark (specular, −22 / −29 dB,
  a little brighter under wind), vegetation and soil in between, built-up blocks bright;
  shallow water under vegetation is brighter still (double bounce), and smooth land
  patches (tarmac, sand) nearly as dark as water: the classic traps;
  gamma speckle of 4.5 looks. Clouds do not touch it.
* **Labels** of the last date: 1 water, 0 not water, −1 under thick cloud (hand labels
  leave clouds out).

Scenes belong to four synthetic events with their own cover, turbidity, cloud and wind
(:data:`FLOOD_EVENTS`), so per-event scores differ as Sen1Floods11's do. Seeded by
``(seed, index)``: scene ``i`` does not depend on how many are made.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from pimc_jax.data.patches import Patch
from pimc_jax.data.sen1floods11 import S1_BANDS, S2_BANDS, FloodChip
from pimc_jax.data.synthetic.spectra import (
    CLOUD,
    IMPERVIOUS,
    SOIL,
    VEGETATION,
    WATER,
    YEAR_START,
    endmember_spectra,
)


@dataclasses.dataclass(frozen=True)
class FloodEvent:
    """How one synthetic event's scenes look (module docstring)."""

    name: str
    vegetation: float  # mean vegetation cover of the land
    urban: float  # fraction of built-up land
    turbidity: float  # soil fraction in floodwater's spectrum
    cloud: float  # probability that a date has clouds
    wind_db: float  # largest wind brightening of open water (dB)


FLOOD_EVENTS: tuple[FloodEvent, ...] = (
    FloodEvent("Riverside", 0.70, 0.05, 0.15, 0.3, 2.0),
    FloodEvent("Deltaland", 0.45, 0.02, 0.35, 0.5, 4.0),
    FloodEvent("Hillvale", 0.80, 0.10, 0.10, 0.2, 1.0),
    FloodEvent("Plainsburg", 0.30, 0.15, 0.25, 0.4, 3.0),
)
# Sentinel-1 backscatter (dB) of each cover: (VV, VH).
_S1_DB = {
    "vegetation": (-10.5, -16.5),
    "soil": (-13.0, -21.0),
    "urban": (-5.0, -11.0),
    "water": (-22.0, -29.0),
    "flooded_vegetation": (-7.0, -15.0),
    "smooth_land": (-18.0, -25.0),  # radar look-alikes of water: tarmac, sand, smooth fields
}
_S1_LOOKS = 4.5
# How much of suspended soil's reflectance each band sees through water (B1..B12 order):
# water absorbs the near infrared and all but cancels the short-wave infrared.
_TURBID_SEEN = np.asarray([1.0, 1.0, 1.0, 1.0, 0.8, 0.4, 0.3, 0.25, 0.2, 0.1, 0.1, 0.02, 0.02])
_SHALLOW = 0.015  # water shallower than this (terrain height units) shows the cover below


def _field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """A smooth random field of ``(size, size)``, standardised (mean 0, std 1)."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-9)


def _terrain(rng: np.random.Generator, size: int) -> np.ndarray:
    """Terrain height in [0, 1]: a meandering river valley, maybe a lake, smooth hills."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64) / size
    angle = rng.uniform(0, np.pi)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    across = -xx * np.sin(angle) + yy * np.cos(angle)
    centre = rng.uniform(-0.2, 0.2) + rng.uniform(0.05, 0.15) * np.sin(
        2 * np.pi * along / rng.uniform(0.5, 1.2) + rng.uniform(0, 2 * np.pi)
    )
    valley = np.abs(across - centre)
    height = valley + 0.12 * _field(rng, size, size / 8)
    if rng.random() < 0.3:  # a lake
        cy, cx = rng.uniform(0.2, 0.8, 2)
        height -= 0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.08**2))
    height -= height.min()
    return height / (height.max() + 1e-9)


def make_flood_scene(
    index: int, *, seed: int = 0, size: int = 64, num_dates: int = 4
) -> dict[str, np.ndarray | str]:
    """One scene over ``num_dates`` dates (module docstring).

    Returns:
      ``s2`` ``(T, H, W, 13)`` float32 reflectance, ``s1`` ``(T, H, W, 3)`` float32 dB,
      ``water`` ``(T, H, W)`` bool, ``labels`` ``(H, W)`` int8 of the last date, ``days``
      ``(T,)`` int32 (days since 1970-01-01), ``event`` (name).
    """
    rng = np.random.default_rng([seed, index, 7])
    event = FLOOD_EVENTS[index % len(FLOOD_EVENTS)]
    height = _terrain(rng, size)
    permanent = rng.uniform(0.02, 0.07)
    flooded = permanent if rng.random() < 0.2 else rng.uniform(0.12, 0.4)
    levels = np.quantile(height, np.linspace(permanent, flooded, num_dates))
    depth = levels[:, None, None] - height[None]  # (T, H, W), > 0 under water
    water = depth > 0

    vegetation = np.clip(event.vegetation + 0.25 * _field(rng, size, 3.0), 0.0, 1.0)
    urban = _field(rng, size, 2.0) > np.quantile(_field(rng, size, 50.0), 1 - event.urban)
    urban &= height > levels[-1]  # towns sit above the flood
    smooth = (_field(rng, size, 2.5) > 1.8) & ~urban
    brightness = 1.0 + 0.15 * _field(rng, size, 4.0)
    spectra = endmember_spectra(S2_BANDS).astype(np.float64)  # (6, 13)
    land = (
        vegetation[..., None] * spectra[VEGETATION]
        + ((1 - vegetation) * brightness)[..., None] * spectra[SOIL]
    )
    land = np.where(urban[..., None], spectra[IMPERVIOUS], land)
    # Floodwater is turbid, the river less so; shallow water shows the cover below.
    turbid = np.where(height[None] <= levels[0], 0.05, event.turbidity)[..., None]
    water_spectrum = (1 - turbid) * spectra[WATER] + turbid * _TURBID_SEEN * spectra[SOIL]
    show = np.clip(depth / _SHALLOW, 0.0, 1.0)[..., None]  # 1 = deep water
    s2 = np.where(water[..., None], show * water_spectrum + (1 - show) * land[None], land[None])

    # Clouds and their shadows, per date.
    cloud = np.zeros((num_dates, size, size))
    for t in range(num_dates):
        if rng.random() < event.cloud:
            cover = rng.uniform(0.05, 0.4)
            blob = _field(rng, size, size / 10)
            cloud[t] = np.clip((blob - np.quantile(blob, 1 - cover)) * 2.0, 0.0, 1.0)
    shadow = np.roll(cloud, shift=(size // 10, size // 12), axis=(1, 2))
    s2 = s2 * (1 - 0.5 * shadow[..., None])
    s2 = (1 - cloud[..., None]) * s2 + cloud[..., None] * spectra[CLOUD]
    s2 = s2 * rng.uniform(0.9, 1.1, (num_dates, 1, 1, 1))
    s2 = s2 + rng.normal(0.0, 0.008, s2.shape)
    s2 = np.clip(s2, 0.0001, 1.0).astype(np.float32)

    # Sentinel-1: cover backscatter in linear power, speckled.
    def db(cover: str, pol: int) -> float:
        return _S1_DB[cover][pol]

    s1_pols = []
    for pol in range(2):
        land_db = vegetation * db("vegetation", pol) + (1 - vegetation) * db("soil", pol)
        land_db = np.where(urban, db("urban", pol), land_db)
        land_db = np.where(smooth, db("smooth_land", pol), land_db) + rng.normal(
            0, 0.8, (size, size)
        )
        wind = rng.uniform(0.0, event.wind_db, (num_dates, 1, 1))
        water_db = db("water", pol) + wind
        # Shallow water among vegetation: double bounce.
        bounce = (show[..., 0] < 1) & (vegetation[None] > 0.5)
        water_db = np.where(bounce, db("flooded_vegetation", pol), water_db)
        sigma_db = np.where(water, water_db, land_db[None])
        linear = 10.0 ** (sigma_db / 10.0) * rng.gamma(_S1_LOOKS, 1 / _S1_LOOKS, sigma_db.shape)
        s1_pols.append(10.0 * np.log10(linear))
    vv, vh = s1_pols
    s1 = np.stack([vv, vh, vv - vh], axis=-1).astype(np.float32)

    labels = water[-1].astype(np.int8)
    labels[cloud[-1] > 0.5] = -1
    start = YEAR_START + int(rng.integers(0, 300))
    days = start + np.cumsum(np.r_[0, rng.integers(5, 13, num_dates - 1)]).astype(np.int32)
    return {"s2": s2, "s1": s1, "water": water, "labels": labels, "days": days, "event": event.name}


def make_flood_chips(
    num_chips: int, *, seed: int = 0, size: int = 64, num_dates: int = 4, first_index: int = 0
) -> list[FloodChip]:
    """Chips ``first_index .. first_index + num_chips − 1``: each scene's last date (the flood)
    as a :class:`~pimc_jax.data.sen1floods11.FloodChip`, as Sen1Floods11 holds it."""
    chips = []
    for index in range(first_index, first_index + num_chips):
        scene = make_flood_scene(index, seed=seed, size=size, num_dates=num_dates)
        chips.append(
            FloodChip(
                chip_id=f"{scene['event']}_{index}",
                event=str(scene["event"]),
                s1=scene["s1"][-1],
                s2=scene["s2"][-1],
                labels=scene["labels"],
            )
        )
    return chips


def make_flood_patches(
    num_patches: int, *, seed: int = 0, size: int = 64, num_dates: int = 4, first_index: int = 0
) -> list[Patch]:
    """The same scenes as :func:`make_flood_chips` as multi-date
    :class:`~pimc_jax.data.patches.Patch` objects (S2 and S1 on every date, the S1 pass a
    day after the S2 one; labels of the last date, −1 kept), for pre-training."""
    patches = []
    for index in range(first_index, first_index + num_patches):
        scene = make_flood_scene(index, seed=seed, size=size, num_dates=num_dates)
        patches.append(
            Patch(
                bands=scene["s2"],
                dates=scene["days"],
                band_names=S2_BANDS,
                labels=scene["labels"].astype(np.int32),
                patch_id=f"{scene['event']}_{index}",
                fold=index % 5 + 1,
                s1_bands=scene["s1"],
                s1_dates=scene["days"] + 1,
                s1_band_names=S1_BANDS,
            )
        )
    return patches
