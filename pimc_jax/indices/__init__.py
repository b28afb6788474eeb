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

The package holds three modules: :mod:`~pimc_jax.indices.bands` (band tables and name
resolution), :mod:`~pimc_jax.indices.optical` (the spectral indices) and
:mod:`~pimc_jax.indices.radar` (the Sentinel-1 series); their public names are
re-exported here.
"""

from pimc_jax.indices.bands import (
    BAND_TABLES,
    DEFAULT_IMAGE_BANDS,
    INDEX_NAMES,
    PAPER_INDICES,
    PLAUSIBLE_INDEX,
    PLAUSIBLE_REFLECTANCE,
    available_indices,
    band_index,
    canonical_band_name,
    check_numeric,
    ready_made_index,
    resolve_band_names,
    resolve_image_bands,
    resolve_indices,
)
from pimc_jax.indices.optical import vegetation_indices
from pimc_jax.indices.radar import (
    PLAUSIBLE_BACKSCATTER_DB,
    RADAR_INDEX_NAMES,
    S1_BAND_NAMES,
    canonical_radar_band_name,
    check_radar_band_names,
    radar_indices,
    resolve_radar_indices,
)

__all__ = [
    "BAND_TABLES",
    "DEFAULT_IMAGE_BANDS",
    "INDEX_NAMES",
    "PAPER_INDICES",
    "PLAUSIBLE_BACKSCATTER_DB",
    "PLAUSIBLE_INDEX",
    "PLAUSIBLE_REFLECTANCE",
    "RADAR_INDEX_NAMES",
    "S1_BAND_NAMES",
    "available_indices",
    "band_index",
    "canonical_band_name",
    "canonical_radar_band_name",
    "check_numeric",
    "check_radar_band_names",
    "radar_indices",
    "ready_made_index",
    "resolve_band_names",
    "resolve_image_bands",
    "resolve_indices",
    "resolve_radar_indices",
    "vegetation_indices",
]
