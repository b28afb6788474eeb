"""Band tables and vegetation indices (NDVI, EVI, SAVI) as pure ``jax.numpy`` functions.

Bands are always looked up by *name* through a band table, never by a hard-coded
position: PASTIS, EuroSAT-all and MODIS store their bands in different orders.

Names are compared in a canonical form (:func:`canonical_band_name`): upper case,
Sentinel-2 band numbers without leading zeros (``"B02" == "B2"``, ``"b8a" == "B8A"``),
and the aliases ``BLUE``/``GREEN``/``RED``/``NIR`` standing for ``B2``/``B3``/``B4``/``B8``.
So the indices find ``NIR``, ``RED`` and ``BLUE`` in a MODIS stack just as they find
``B8``, ``B4`` and ``B2`` in a Sentinel-2 one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax.numpy as jnp

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
_ALIASES: dict[str, str] = {"BLUE": "B2", "GREEN": "B3", "RED": "B4", "NIR": "B8"}

_SENTINEL2_NAME = re.compile(r"^B0*(\d+)(A?)$")

# Bands each index reads, as canonical names.
_INDEX_BANDS: dict[str, tuple[str, ...]] = {
    "ndvi": ("B8", "B4"),
    "evi": ("B8", "B4", "B2"),
    "savi": ("B8", "B4"),
}

INDEX_NAMES: tuple[str, ...] = tuple(_INDEX_BANDS)


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
      ValueError: unknown table name, or two names that are the same band.
    """
    if isinstance(band_names, str):
        key = band_names.strip().lower()
        if key not in BAND_TABLES:
            raise ValueError(
                f"unknown band table {band_names!r}; known tables: {sorted(BAND_TABLES)} "
                "(or pass a sequence of band names)"
            )
        return BAND_TABLES[key]
    names = tuple(band_names)
    canonical = [canonical_band_name(n) for n in names]
    duplicates = sorted({c for c in canonical if canonical.count(c) > 1})
    if duplicates:
        raise ValueError(f"band names {names} name the same band twice: {duplicates}")
    return names


def band_index(band_names: str | Sequence[str], name: str) -> int:
    """Position of band ``name`` in ``band_names`` (a table name or a sequence of names).

    Names are compared in canonical form, so ``band_index("eurosat", "B8") == 7`` and
    ``band_index("modis", "B8") == 2`` (MODIS ``NIR``).

    Raises:
      ValueError: the band is not among ``band_names``; the message names the band and
        the names given.
    """
    names = resolve_band_names(band_names)
    wanted = canonical_band_name(name)
    for position, candidate in enumerate(names):
        if canonical_band_name(candidate) == wanted:
            return position
    raise ValueError(f"band {name!r} (canonical {wanted!r}) not found in band names {names}")


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
    indices: Sequence[str] = ("ndvi", "evi", "savi"),
    *,
    scale: float = 1.0,
    nodata: float | None = None,
    eps: float = 1e-6,
    return_mask: bool = False,
) -> jnp.ndarray | tuple[jnp.ndarray, jnp.ndarray]:
    """Computes vegetation indices from a band stack.

    With reflectance ``ρ = bands / scale`` and NIR = B8, R = B4, B = B2 (looked up by name):

    - NDVI = (NIR − R) / (NIR + R)
    - EVI  = 2.5 (NIR − R) / (NIR + 6 R − 7.5 B + 1)
    - SAVI = 1.5 (NIR − R) / (NIR + R + 0.5)

    Args:
      bands: ``(..., C)`` array, bands on the last axis, any leading shape; cast to float32.
      band_names: ``C`` band names, or a table name from :data:`BAND_TABLES`.
      indices: names of the indices to compute, in output order; any of ``"ndvi"``,
        ``"evi"``, ``"savi"`` (case-insensitive).
      scale: ``bands`` are divided by it to get reflectance (10 000 for PASTIS digital
        numbers; 1 for data already in [0, 1]).
      nodata: raw band value (before scaling) marking missing data, e.g. ``-10000``;
        NaN is always treated as missing.
      eps: an index whose denominator satisfies ``|denominator| < eps`` (in reflectance
        units) is invalid.
      return_mask: also return the validity mask.

    Returns:
      ``values``: ``(..., K)`` float32, ``K = len(indices)``. ``values[..., k]`` is index
      ``k`` where it is valid and exactly ``0.0`` where it is not. Index ``k`` is invalid
      at a sample when one of the bands it reads is NaN or equal to ``nodata``, or its
      denominator is below ``eps`` in magnitude. Values are not clipped (NDVI and SAVI
      lie in [−1, 1] and [−1.5, 1.5] for reflectance in [0, 1]; EVI is unbounded).
      If ``return_mask``: ``(values, valid)`` with ``valid`` ``(...,)`` bool, True where
      *all* ``K`` indices are valid. Values and gradients are always finite.

    Raises:
      ValueError: unknown index name, a needed band missing from ``band_names``, or
        ``len(band_names)`` not matching ``bands.shape[-1]``.
    """
    names = resolve_band_names(band_names)
    requested = tuple(str(name).lower() for name in indices)
    if not requested:
        raise ValueError("indices must name at least one index")
    unknown = [name for name in requested if name not in _INDEX_BANDS]
    if unknown:
        raise ValueError(f"unknown vegetation index {unknown}; known indices: {INDEX_NAMES}")
    bands = jnp.asarray(bands, dtype=jnp.float32)
    if bands.ndim < 1 or bands.shape[-1] != len(names):
        raise ValueError(
            f"bands of shape {bands.shape} must have {len(names)} channels on its last axis, "
            f"one per band name {names}"
        )

    needed = sorted({band for name in requested for band in _INDEX_BANDS[name]})
    reflectance: dict[str, jnp.ndarray] = {}
    band_ok: dict[str, jnp.ndarray] = {}
    for band in needed:
        raw = bands[..., band_index(names, band)]
        ok = jnp.isfinite(raw)
        if nodata is not None:
            ok = ok & (raw != nodata)
        # Zero out missing samples before any arithmetic so no NaN enters a gradient.
        reflectance[band] = jnp.where(ok, raw, 0.0) / scale
        band_ok[band] = ok

    nir, red = reflectance["B8"], reflectance["B4"]
    nir_red_ok = band_ok["B8"] & band_ok["B4"]
    outputs = []
    mask = None
    for name in requested:
        if name == "ndvi":
            value, ok = _safe_ratio(nir - red, nir + red, nir_red_ok, eps)
        elif name == "evi":
            blue = reflectance["B2"]
            value, ok = _safe_ratio(
                2.5 * (nir - red),
                nir + 6.0 * red - 7.5 * blue + 1.0,
                nir_red_ok & band_ok["B2"],
                eps,
            )
        else:  # savi
            value, ok = _safe_ratio(1.5 * (nir - red), nir + red + 0.5, nir_red_ok, eps)
        outputs.append(value)
        mask = ok if mask is None else mask & ok
    values = jnp.stack(outputs, axis=-1).astype(jnp.float32)
    if return_mask:
        return values, mask
    return values
