"""Band tables and band names: canonical spellings, index and image-band resolution.

Names are compared in a canonical form (:func:`canonical_band_name`), so ``"B02"``,
``"b2"`` and ``"BLUE"`` are the same band; every index and view looks bands up by name
through these functions, never by position.
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

#: Bands each index reads, as canonical names. The last four are normalised differences
#: (a − b) / (a + b) of the two bands listed, in that order.
INDEX_BANDS: dict[str, tuple[str, ...]] = {
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

INDEX_NAMES: tuple[str, ...] = tuple(INDEX_BANDS)
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
        if index.upper() in have or all(band in have for band in INDEX_BANDS[index])
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
                    f"{dict(INDEX_BANDS)} or a ready-made index band"
                )
            resolved += found
        elif item == "bands":
            resolved += [
                canonical_band_name(n)
                for n in names
                if canonical_band_name(n).lower() not in INDEX_BANDS
            ]
        elif item in INDEX_BANDS:
            if item not in available_indices(names, (item,)):
                raise ValueError(
                    f"index {item!r} needs bands {INDEX_BANDS[item]} (or a ready-made band "
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
