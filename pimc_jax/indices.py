"""Band tables and spectral indices (NDVI, EVI, SAVI, NDMI, NBR, NDRE, NDWI) in ``jax.numpy``.

Bands are always looked up by *name* through a band table, never by a hard-coded
position: PASTIS, EuroSAT-all and MODIS store their bands in different orders.

Names are compared in a canonical form (:func:`canonical_band_name`): upper case,
Sentinel-2 band numbers without leading zeros (``"B02" == "B2"``, ``"b8a" == "B8A"``),
and the aliases ``BLUE``/``GREEN``/``RED``/``NIR`` standing for ``B2``/``B3``/``B4``/``B8``,
``SWIR1``/``SWIR2`` for ``B11``/``B12`` and ``MIR`` (MODIS band 7, 2.1 µm, as in the MOD13
products) for ``B12``. So the indices find ``NIR``, ``RED`` and ``BLUE`` in a MODIS stack
just as they find ``B8``, ``B4`` and ``B2`` in a Sentinel-2 one.

A stack may also hold **ready-made index series**: a band named like an index (``NDVI``,
``EVI``, ...) is that index, read as it is (divided by ``scale`` like every band), so data
that arrive as an NDVI stack need no reflectance at all.

**Implausible values are no-data.** Rasters often mark missing data with an extreme
value (GDAL's float32 default ``3.4028235e38``, ``-1e30``, ``65535``, ...). A reflectance
outside :data:`PLAUSIBLE_REFLECTANCE` (after scaling), or a ready-made index outside
:data:`PLAUSIBLE_INDEX`, is treated like NaN: masked. So every finite input gives
finite indices, and the indices stay within a few million even at the ``eps`` limit.

**Radar.** Sentinel-1 series (VV, VH, their ratio, the cross ratio and the radar
vegetation index RVI) are chosen by name in the same way, from VV/VH backscatter in dB
or linear power (:func:`radar_indices`, channels :data:`S1_BAND_NAMES`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

BAND_TABLES: dict[str, tuple[str, ...]] = {
    # PASTIS S2 patches: (T, 10, 128, 128), 10 m and 20 m bands.
    "pastis": ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
    # EuroSAT "all" (13 bands): B01..B12 in numeric order, then B8A *last*.
    "eurosat": (
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B09",
        "B10",
        "B11",
        "B12",
        "B8A",
    ),
    # MODIS surface reflectance, named by wavelength range.
    "modis": ("BLUE", "RED", "NIR", "MIR"),
}

# Sensor-neutral aliases, mapped onto the Sentinel-2 band they stand for.
_ALIASES: dict[str, str] = {
    "BLUE": "B2",
    "GREEN": "B3",
    "RED": "B4",
    "NIR": "B8",
    "SWIR1": "B11",
    "SWIR2": "B12",
    "MIR": "B12",
}

_SENTINEL2_NAME = re.compile(r"^B0*(\d+)(A?)$")

# Bands each index reads, as canonical names. The last four are normalised differences
# (a − b) / (a + b) of the two bands listed, in that order.
_INDEX_BANDS: dict[str, tuple[str, ...]] = {
    "ndvi": ("B8", "B4"),
    "evi": ("B8", "B4", "B2"),
    "savi": ("B8", "B4"),
    "ndmi": ("B8", "B11"),  # moisture (Gao's NDWI): NIR against SWIR 1.6 µm
    "nbr": ("B8", "B12"),  # normalised burn ratio: NIR against SWIR 2.2 µm
    "ndre": ("B8", "B5"),  # red edge: NIR against B5 (705 nm)
    "ndwi": ("B3", "B8"),  # open water (McFeeters): green against NIR
}

#: Plausible surface reflectance ``(low, high)``, after scaling. Atmospheric correction can
#: give slightly negative values over water and shadows, and specular or saturated pixels
#: exceed 1; anything outside this closed interval is taken as a no-data marker.
PLAUSIBLE_REFLECTANCE: tuple[float, float] = (-0.5, 2.0)
#: Plausible value ``(low, high)`` of a ready-made index band (``NDVI``, ``EVI``, ...),
#: after scaling; normalised differences lie in [−1, 1], EVI rarely beyond [−2, 3].
PLAUSIBLE_INDEX: tuple[float, float] = (-10.0, 10.0)

INDEX_NAMES: tuple[str, ...] = tuple(_INDEX_BANDS)
#: The three indices of the paper, in its channel order.
PAPER_INDICES: tuple[str, ...] = ("ndvi", "evi", "savi")


def canonical_band_name(name: str) -> str:
    """Returns the canonical spelling of a band name.

    Upper case and stripped; Sentinel-2 names lose leading zeros (``"B02"`` → ``"B2"``,
    ``"B08A"``/``"b8a"`` → ``"B8A"``); ``BLUE``/``GREEN``/``RED``/``NIR`` become
    ``B2``/``B3``/``B4``/``B8``. Any other name (e.g. MODIS ``"MIR"``) is only upper-cased.
    """
    if not isinstance(name, str):
        raise ValueError(f"band names must be strings, got {name!r}")
    upper = name.strip().upper()
    if upper in _ALIASES:
        return _ALIASES[upper]
    match = _SENTINEL2_NAME.match(upper)
    if match:
        return f"B{int(match.group(1))}{match.group(2)}"
    return upper


def resolve_band_names(band_names: str | Sequence[str]) -> tuple[str, ...]:
    """Returns the band names as a tuple, expanding a table name from :data:`BAND_TABLES`.

    Raises:
      ValueError: unknown table name, not a sequence of strings, or two names that are the
        same band.
    """
    if isinstance(band_names, str):
        key = band_names.strip().lower()
        if key not in BAND_TABLES:
            raise ValueError(
                f"unknown band table {band_names!r}; known tables: {sorted(BAND_TABLES)} "
                "(or pass a sequence of band names)"
            )
        return BAND_TABLES[key]
    try:
        names = tuple(band_names)
    except TypeError:
        names = None
    if names is None or not all(isinstance(name, str) for name in names):
        raise ValueError(
            f"band_names must be a sequence of band name strings or a band table name "
            f"({sorted(BAND_TABLES)}), got {band_names!r}"
        )
    canonical = [canonical_band_name(n) for n in names]
    duplicates = sorted({c for c in canonical if canonical.count(c) > 1})
    if duplicates:
        raise ValueError(f"band names {names} name the same band twice: {duplicates}")
    return names


def _find_band(names: Sequence[str], name: str) -> int | None:
    """Position of ``name`` among ``names``, compared in canonical form, or None."""
    wanted = canonical_band_name(name)
    return next((p for p, c in enumerate(names) if canonical_band_name(c) == wanted), None)


def ready_made_index(band_names: str | Sequence[str], index: str) -> int | None:
    """Position of a band that *is* ``index`` (named e.g. ``"NDVI"``), or None."""
    return _find_band(resolve_band_names(band_names), index)


def available_indices(
    band_names: str | Sequence[str], candidates: Sequence[str] = INDEX_NAMES
) -> tuple[str, ...]:
    """The ``candidates`` computable from ``band_names``: ready-made, or all bands present."""
    names = resolve_band_names(band_names)
    have = {canonical_band_name(n) for n in names}
    return tuple(
        index
        for index in candidates
        if index.upper() in have or all(band in have for band in _INDEX_BANDS[index])
    )


def resolve_indices(
    requested: str | Sequence[str], band_names: str | Sequence[str]
) -> tuple[str, ...]:
    """Series names a model computes from ``band_names``: spectral indices and raw bands.

    ``requested`` is a sequence whose items are

    - an index name of :data:`INDEX_NAMES` (computed, or read from a ready-made band);
    - ``"auto"``: every index of :data:`INDEX_NAMES` that ``band_names`` can give
      (ready-made bands included), in that order. So one configuration serves Sentinel-2
      (all seven), MODIS with blue, red, NIR and MIR (NDVI, EVI, SAVI, NBR) and an
      NDVI-only stack (NDVI);
    - ``"bands"``: every band of ``band_names`` that is not a ready-made index, as its
      reflectance series (canonical names, e.g. ``"B11"``);
    - a band name of ``band_names`` (e.g. ``"B11"``, ``"swir1"``): that band's reflectance.

    A plain string is one item. Duplicates are dropped, the first occurrence kept.

    Raises:
      ValueError: an unknown name, an index whose bands are missing (the message names
        the bands), or nothing to compute.
    """
    names = resolve_band_names(band_names)
    have = {canonical_band_name(n) for n in names}
    items = (requested,) if isinstance(requested, str) else tuple(requested)
    items = tuple(str(item).strip().lower() for item in items)
    resolved: list[str] = []
    for item in items:
        if item == "auto":
            found = available_indices(names)
            if not found and items == ("auto",):
                raise ValueError(
                    f"no spectral index can be computed from bands {names}; indices need "
                    f"{dict(_INDEX_BANDS)} or a ready-made index band"
                )
            resolved += found
        elif item == "bands":
            resolved += [
                canonical_band_name(n)
                for n in names
                if canonical_band_name(n).lower() not in _INDEX_BANDS
            ]
        elif item in _INDEX_BANDS:
            if item not in available_indices(names, (item,)):
                raise ValueError(
                    f"index {item!r} needs bands {_INDEX_BANDS[item]} (or a ready-made band "
                    f"of that name), not all in {names}"
                )
            resolved.append(item)
        elif canonical_band_name(item) in have:
            resolved.append(canonical_band_name(item))
        else:
            raise ValueError(
                f"unknown index or band {item!r}; known: {INDEX_NAMES}, 'auto', 'bands' or "
                f"a band of {names}"
            )
    resolved = list(dict.fromkeys(resolved))
    if not resolved:
        raise ValueError(f"indices {items} name nothing to compute from bands {names}")
    return tuple(resolved)


# The image view's bands when ``data.image_bands`` is ``("auto",)``: true colour and NIR.
DEFAULT_IMAGE_BANDS: tuple[str, ...] = ("B4", "B3", "B2", "B8")


def resolve_image_bands(
    requested: str | Sequence[str], band_names: str | Sequence[str]
) -> tuple[str, ...]:
    """The image view's bands (``data.image_bands``) for data with ``band_names``.

    ``("auto",)`` (or ``"auto"``) gives :data:`DEFAULT_IMAGE_BANDS` when the data hold all
    of them, else every band of the data in its order (e.g. ``("NDVI",)`` for an NDVI-only
    stack, ``("NDVI", "EVI")`` for index-only Landsat composites); explicit names are
    returned as given and checked against ``band_names``.

    Raises:
      ValueError: an explicit band is not among ``band_names``.
    """
    names = resolve_band_names(band_names)
    wanted = (requested,) if isinstance(requested, str) else tuple(requested)
    if wanted == ("auto",):
        if all(_find_band(names, band) is not None for band in DEFAULT_IMAGE_BANDS):
            return DEFAULT_IMAGE_BANDS
        return tuple(names)
    for band in wanted:
        band_index(names, band)
    return wanted


def band_index(band_names: str | Sequence[str], name: str) -> int:
    """Position of band ``name`` in ``band_names`` (a table name or a sequence of names).

    Names are compared in canonical form, so ``band_index("eurosat", "B8") == 7`` and
    ``band_index("modis", "B8") == 2`` (MODIS ``NIR``).

    Raises:
      ValueError: the band is not among ``band_names``; the message names the band and
        the names given.
    """
    names = resolve_band_names(band_names)
    position = _find_band(names, name)
    if position is None:
        raise ValueError(
            f"band {name!r} (canonical {canonical_band_name(name)!r}) not found in band "
            f"names {names}"
        )
    return position


def check_numeric(value: object, name: str) -> None:
    """Raises a one-line ValueError unless ``value`` holds bool, integer or float numbers.

    Works on NumPy and JAX arrays (also tracers, by their dtype) and on nested lists, so an
    object, string, datetime64 or complex array fails here with a clear message instead
    of deep inside JAX.
    """
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{name} must be a numeric array, got {type(value).__name__} ({err})"
            ) from None
    try:
        numeric = any(
            jnp.issubdtype(dtype, kind) for kind in (jnp.bool_, jnp.integer, jnp.floating)
        )
    except TypeError:
        numeric = False
    if not numeric:
        raise ValueError(f"{name} must be a numeric (bool, int or float) array, got dtype {dtype}")


def _safe_ratio(
    numerator: jnp.ndarray, denominator: jnp.ndarray, valid: jnp.ndarray, eps: float
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``numerator / denominator`` where valid and ``|denominator| >= eps``, else 0.

    Double ``where``: the division only ever sees a safe denominator, so neither the
    value nor its gradient can become inf/NaN.
    """
    ok = valid & (jnp.abs(denominator) >= eps)
    safe_denominator = jnp.where(ok, denominator, 1.0)
    safe_numerator = jnp.where(ok, numerator, 0.0)
    return jnp.where(ok, safe_numerator / safe_denominator, 0.0), ok


def vegetation_indices(
    bands: jnp.ndarray,
    band_names: str | Sequence[str],
    indices: Sequence[str] = PAPER_INDICES,
    *,
    scale: float = 1.0,
    nodata: float | None = None,
    eps: float = 1e-6,
    return_mask: bool = False,
) -> jnp.ndarray | tuple[jnp.ndarray, jnp.ndarray]:
    """Computes spectral indices from a band stack.

    With reflectance ``ρ = bands / scale`` and NIR = B8, R = B4, B = B2, G = B3, RE = B5,
    SWIR1 = B11, SWIR2 = B12 (looked up by name):

    - NDVI = (NIR − R) / (NIR + R)
    - EVI  = 2.5 (NIR − R) / (NIR + 6 R − 7.5 B + 1)
    - SAVI = 1.5 (NIR − R) / (NIR + R + 0.5)
    - NDMI = (NIR − SWIR1) / (NIR + SWIR1)   (moisture)
    - NBR  = (NIR − SWIR2) / (NIR + SWIR2)   (burn ratio)
    - NDRE = (NIR − RE) / (NIR + RE)         (red edge)
    - NDWI = (G − NIR) / (G + NIR)           (open water)

    A band named like an index (``"NDVI"``) is taken as that index, ``band / scale``,
    instead of computing it (so a ready-made NDVI stack needs no reflectance bands).

    Args:
      bands: ``(..., C)`` array, bands on the last axis, any leading shape; cast to float32.
      band_names: ``C`` band names, or a table name from :data:`BAND_TABLES`.
      indices: names of the indices to compute, in output order; any of
        :data:`INDEX_NAMES` (case-insensitive).
      scale: ``bands`` are divided by it to get reflectance (10 000 for PASTIS digital
        numbers; 1 for data already in [0, 1]).
      nodata: raw band value (before scaling) marking missing data, e.g. ``-10000``;
        NaN and ±inf are always treated as missing, and so is a reflectance
        ``bands / scale`` outside :data:`PLAUSIBLE_REFLECTANCE` (a ready-made index band
        outside :data:`PLAUSIBLE_INDEX`).
      eps: an index whose denominator satisfies ``|denominator| < eps`` (in reflectance
        units) is invalid.
      return_mask: also return the validity mask.

    Returns:
      ``values``: ``(..., K)`` float32, ``K = len(indices)``. ``values[..., k]`` is index
      ``k`` where it is valid and exactly ``0.0`` where it is not. Index ``k`` is invalid
      at a sample when one of the bands it reads is missing (NaN, inf, equal to ``nodata``
      or outside the plausible range), or its denominator is below ``eps`` in magnitude.
      Values are not clipped (the normalised differences and SAVI lie in [−1, 1] and
      [−1.5, 1.5] for reflectance in [0, 1]; EVI is unbounded). If ``return_mask``:
      ``(values, valid)`` with ``valid`` ``(...,)`` bool, True where *all* ``K`` indices
      are valid. Values and gradients are finite for every input (``|EVI| < 7 / eps``,
      the other indices ``< 5 / eps``).

    Raises:
      ValueError: unknown index name, a needed band missing from ``band_names``,
        ``len(band_names)`` not matching ``bands.shape[-1]``, a non-numeric ``bands``
        dtype, or ``scale`` not a finite positive number.
    """
    check_numeric(bands, "bands")
    if isinstance(scale, (int, float, np.number)) and not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite positive number, got {scale!r}")
    names = resolve_band_names(band_names)
    requested = resolve_indices(tuple(indices), names) if len(indices) else ()
    if not requested:
        raise ValueError("indices must name at least one index")
    bands = jnp.asarray(bands, dtype=jnp.float32)
    if bands.ndim < 1 or bands.shape[-1] != len(names):
        raise ValueError(
            f"bands of shape {bands.shape} must have {len(names)} channels on its last axis, "
            f"one per band name {names}"
        )

    def read(position: int, plausible: tuple[float, float]) -> tuple[jnp.ndarray, jnp.ndarray]:
        raw = bands[..., position]
        ok = jnp.isfinite(raw)
        if nodata is not None:
            ok = ok & (raw != nodata)
        # Zero out missing samples before any arithmetic so no NaN enters a gradient.
        value = jnp.where(ok, raw, 0.0) / scale
        # A huge finite raw value can overflow the division; the range test catches it.
        ok = ok & (value >= plausible[0]) & (value <= plausible[1])
        return jnp.where(ok, value, 0.0), ok

    reflectance: dict[str, tuple[jnp.ndarray, jnp.ndarray]] = {}

    def band(name: str) -> tuple[jnp.ndarray, jnp.ndarray]:
        if name not in reflectance:
            reflectance[name] = read(band_index(names, name), PLAUSIBLE_REFLECTANCE)
        return reflectance[name]

    outputs = []
    mask = None
    for name in requested:
        ready = ready_made_index(names, name)
        if name not in _INDEX_BANDS:  # a raw band (resolve_indices checked it exists)
            value, ok = band(name)
        elif ready is not None:
            value, ok = read(ready, PLAUSIBLE_INDEX)
        elif name in ("ndvi", "evi", "savi"):
            (nir, nir_ok), (red, red_ok) = band("B8"), band("B4")
            if name == "ndvi":
                value, ok = _safe_ratio(nir - red, nir + red, nir_ok & red_ok, eps)
            elif name == "evi":
                blue, blue_ok = band("B2")
                value, ok = _safe_ratio(
                    2.5 * (nir - red),
                    nir + 6.0 * red - 7.5 * blue + 1.0,
                    nir_ok & red_ok & blue_ok,
                    eps,
                )
            else:
                value, ok = _safe_ratio(1.5 * (nir - red), nir + red + 0.5, nir_ok & red_ok, eps)
        else:  # a normalised difference of two bands
            (a, a_ok), (b, b_ok) = (band(n) for n in _INDEX_BANDS[name])
            value, ok = _safe_ratio(a - b, a + b, a_ok & b_ok, eps)
        outputs.append(value)
        mask = ok if mask is None else mask & ok
    values = jnp.stack(outputs, axis=-1).astype(jnp.float32)
    if return_mask:
        return values, mask
    return values


# Sentinel-1 (radar) --------------------------------------------------------------------

#: Sentinel-1 channels of PASTIS-R (``DATA_S1A``/``DATA_S1D``) and of every S1 series a
#: :class:`~pimc_jax.data.patches.Patch` holds, in order: backscatter σ0 of VV and of VH in
#: dB, and their ratio VV/VH in dB (``VV_dB − VH_dB``).
S1_BAND_NAMES: tuple[str, ...] = ("VV", "VH", "VV/VH")
#: Radar series computable from VV and VH (:func:`radar_indices`), in their default order.
RADAR_INDEX_NAMES: tuple[str, ...] = ("vv", "vh", "ratio", "cross_ratio", "rvi")
#: Plausible backscatter σ0 ``(low, high)`` in dB: C-band σ0 of land lies within about
#: −35..+10 dB (urban corner reflectors reach +20); anything outside this closed interval
#: (or a non-positive linear value, −inf dB) is taken as a no-data marker.
PLAUSIBLE_BACKSCATTER_DB: tuple[float, float] = (-50.0, 30.0)

# Channels each radar series reads (canonical radar band names).
_RADAR_INDEX_BANDS: dict[str, tuple[str, ...]] = {
    "vv": ("VV",),
    "vh": ("VH",),
    "ratio": ("VV", "VH"),
    "cross_ratio": ("VV", "VH"),
    "rvi": ("VV", "VH"),
}
_RATIO_BAND = "VV/VH"


def canonical_radar_band_name(name: str) -> str:
    """Canonical spelling of a Sentinel-1 channel name: upper case, no spaces.

    ``"vv"`` → ``"VV"``, ``"vv / vh"`` → ``"VV/VH"``. Known channels are those of
    :data:`S1_BAND_NAMES`; any other name is only normalised.
    """
    if not isinstance(name, str):
        raise ValueError(f"radar band names must be strings, got {name!r}")
    return "".join(name.split()).upper()


def check_radar_band_names(band_names: Sequence[str]) -> tuple[str, ...]:
    """``band_names`` in canonical form, each one of :data:`S1_BAND_NAMES`, none twice.

    Raises:
      ValueError: one line naming the unknown or repeated names.
    """
    if isinstance(band_names, str):
        raise ValueError(f"radar band names must be a sequence of names, got {band_names!r}")
    names = tuple(canonical_radar_band_name(name) for name in band_names)
    unknown = [name for name in names if name not in S1_BAND_NAMES]
    if unknown:
        raise ValueError(f"unknown Sentinel-1 band names {unknown}; known: {S1_BAND_NAMES}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Sentinel-1 band names {names} name {repeated} twice")
    return names


def resolve_radar_indices(
    requested: str | Sequence[str], band_names: Sequence[str] = S1_BAND_NAMES
) -> tuple[str, ...]:
    """Radar series names computable from ``band_names`` (case-insensitive).

    Items: a name of :data:`RADAR_INDEX_NAMES`, or ``"auto"`` for every one the channels
    allow (VV alone gives ``vv``; VV and VH give all five). A plain string is one item;
    duplicates are dropped, the first occurrence kept.

    Raises:
      ValueError: an unknown name, a series whose channels are missing (naming them), or
        nothing to compute.
    """
    have = set(check_radar_band_names(band_names))
    items = (requested,) if isinstance(requested, str) else tuple(requested)
    resolved: list[str] = []
    for item in (str(item).strip().lower() for item in items):
        if item == "auto":
            resolved += [
                name
                for name, needs in _RADAR_INDEX_BANDS.items()
                if all(band in have for band in needs)
            ]
        elif item in _RADAR_INDEX_BANDS:
            missing = [band for band in _RADAR_INDEX_BANDS[item] if band not in have]
            if missing:
                raise ValueError(
                    f"radar series {item!r} needs channels {missing}, not in {tuple(band_names)}"
                )
            resolved.append(item)
        else:
            raise ValueError(f"unknown radar series {item!r}; known: {RADAR_INDEX_NAMES}, 'auto'")
    resolved = list(dict.fromkeys(resolved))
    if not resolved:
        raise ValueError(f"radar series {items} name nothing to compute from {tuple(band_names)}")
    return tuple(resolved)


def radar_indices(
    s1: jnp.ndarray,
    names: str | Sequence[str] = RADAR_INDEX_NAMES,
    *,
    band_names: Sequence[str] = S1_BAND_NAMES,
    db: bool = True,
    nodata: float | None = None,
    return_mask: bool = False,
) -> jnp.ndarray | tuple[jnp.ndarray, jnp.ndarray]:
    """Radar series from Sentinel-1 VV and VH backscatter, chosen by name.

    With σVV and σVH the backscatter coefficients in linear power (``σ = 10^(dB / 10)``):

    - ``vv``          VV in dB, ``10·log10(σVV)``;
    - ``vh``          VH in dB;
    - ``ratio``       VV/VH in dB, ``VV_dB − VH_dB`` (PASTIS-R's third channel);
    - ``cross_ratio`` σVH / σVV, linear (the cross ratio; typically 0.01..0.5);
    - ``rvi``         dual-pol radar vegetation index ``4·σVH / (σVV + σVH)``, linear
      (0 for bare soil, rising with vegetation; below 4).

    Only the ``VV`` and ``VH`` channels are read; a ``VV/VH`` channel is ignored (it is
    recomputed, so all outputs agree).

    Args:
      s1: ``(..., C)`` array, channels on the last axis named by ``band_names``; cast to
        float32.
      names: series of :data:`RADAR_INDEX_NAMES` in output order, or ``"auto"``
        (:func:`resolve_radar_indices`).
      band_names: the ``C`` channel names (:data:`S1_BAND_NAMES` by default).
      db: ``s1`` holds dB (``True``, as PASTIS-R and every :class:`Patch`) or linear power.
      nodata: raw value marking missing data; NaN and ±inf are always missing, and so is a
        backscatter outside :data:`PLAUSIBLE_BACKSCATTER_DB` (a linear value ≤ 0).
      return_mask: also return the validity mask.

    Returns:
      ``values``: ``(..., K)`` float32, ``K`` the number of series; a series is exactly
      ``0.0`` where a channel it reads is missing. If ``return_mask``: ``(values, valid)``
      with ``valid`` ``(...,)`` bool, True where all ``K`` series are valid. Values and
      gradients are finite for every input (``|dB| ≤ 80``, cross ratio within 1e±8).

    Raises:
      ValueError: unknown series, a channel it needs missing, ``len(band_names)`` not
        matching ``s1.shape[-1]``, or a non-numeric ``s1``.
    """
    check_numeric(s1, "s1")
    channels = check_radar_band_names(band_names)
    requested = resolve_radar_indices(names, channels)
    s1 = jnp.asarray(s1, dtype=jnp.float32)
    if s1.ndim < 1 or s1.shape[-1] != len(channels):
        raise ValueError(
            f"s1 of shape {s1.shape} must have {len(channels)} channels on its last axis, "
            f"one per band name {channels}"
        )
    low, high = PLAUSIBLE_BACKSCATTER_DB

    def read(name: str) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        """(dB, linear power, ok) of channel ``name``; 0 dB / 1 where not ok."""
        raw = s1[..., channels.index(name)]
        ok = jnp.isfinite(raw)
        if nodata is not None:
            ok = ok & (raw != nodata)
        if db:
            value_db = jnp.where(ok, raw, 0.0)
        else:
            positive = ok & (raw > 0.0)
            value_db = 10.0 * jnp.log10(jnp.where(positive, raw, 1.0))
            ok = positive
        ok = ok & (value_db >= low) & (value_db <= high)
        value_db = jnp.where(ok, value_db, 0.0)
        return value_db, jnp.power(10.0, value_db / 10.0), ok

    vv = read("VV") if "VV" in channels else None
    vh = read("VH") if "VH" in channels else None
    outputs, mask = [], None
    for name in requested:
        if name == "vv":
            value, ok = vv[0], vv[2]
        elif name == "vh":
            value, ok = vh[0], vh[2]
        else:
            ok = vv[2] & vh[2]
            if name == "ratio":
                value = vv[0] - vh[0]
            elif name == "cross_ratio":
                value = jnp.power(10.0, (vh[0] - vv[0]) / 10.0)
            else:  # rvi; the denominator is at least 2·10^(low/10) > 0
                value = 4.0 * vh[1] / (vv[1] + vh[1])
        outputs.append(jnp.where(ok, value, 0.0))
        mask = ok if mask is None else mask & ok
    values = jnp.stack(outputs, axis=-1).astype(jnp.float32)
    if return_mask:
        return values, mask
    return values
