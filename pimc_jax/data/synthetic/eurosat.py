"""A EuroSAT stand-in: ten land-cover scene classes at one date, mixed from the synthetic
endmember spectra, hard on purpose (any season, soil and illumination changes, haze, and
sensor noise that grows at low sun): :func:`make_image_classification_set`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pimc_jax.data.classes import EUROSAT_CLASS_NAMES, SYNTHETIC_CLASS_NAMES
from pimc_jax.data.synthetic.spectra import (
    CLASS_TABLE,
    DAYS_IN_YEAR,
    FLOWER,
    IMPERVIOUS,
    SOIL,
    VEGETATION,
    WATER,
    endmember_spectra,
    sigmoid,
)
from pimc_jax.indices import canonical_band_name, resolve_band_names

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
        + (peak - winter) * sigmoid((day - green_up) / rise)
        - (peak - after) * sigmoid((day - senescence) / fall)
    )


def _class_greenness(
    rng: np.random.Generator, classes: np.ndarray, day: float
) -> tuple[np.ndarray, np.ndarray]:
    """Greenness and yellow-flower fraction on ``day`` of synthetic classes ``classes``.

    Each entry of ``classes`` (any shape) gets its own phenology jitter, as a parcel of
    :func:`make_patch`: date shift, seasonal amplitude, cover offset, grassland cut date.
    """
    t = {k: v[classes] for k, v in CLASS_TABLE.items()}
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
    t = {k: v[crop][field] for k, v in CLASS_TABLE.items()}
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
    declination = np.deg2rad(23.44) * np.sin(2 * np.pi * (day - 81) / DAYS_IN_YEAR)
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
    spectra = endmember_spectra(names).astype(np.float64)
    wavelength_um = np.asarray([_WAVELENGTH_NM[canonical_band_name(n)] for n in names]) / 1000
    num_classes = len(EUROSAT_CLASS_NAMES)
    labels = np.random.default_rng(seed).permutation(np.arange(num_images) % num_classes)
    images = np.empty((num_images, size, size, len(names)), dtype=np.float32)
    for i, label in enumerate(labels):
        rng = np.random.default_rng([seed, i, 1])
        day = rng.uniform(0.0, DAYS_IN_YEAR)
        cover = _scene_cover(rng, int(label), size, day)
        # Soil moisture (darker when wet) and colour (iron oxides redden, organic matter greys).
        soil_tint = rng.uniform(0.75, 1.25) * (
            1 + rng.uniform(-0.3, 0.3) * (wavelength_um - 0.8) / 0.8
        )
        soil = cover["soil"][..., None] * spectra[SOIL] * soil_tint
        land = (
            soil
            + cover["greenness"][..., None] * (spectra[VEGETATION] - soil)
            + cover["flowers"][..., None] * (spectra[FLOWER] - spectra[VEGETATION])
        ) * cover["texture"][..., None]
        water = cover["water"][..., None]
        impervious = np.clip(cover["impervious"], 0.0, 1.0 - cover["water"])[..., None]
        scene = (
            (1.0 - water - impervious) * land
            + water * spectra[WATER]
            + impervious * cover["roof"][..., None] * spectra[IMPERVIOUS]
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
