"""Your own data: pixel time series in one ``.npz`` file, or a folder of SITS patches.

Pixel time series (:func:`load_pixel_npz`)
------------------------------------------
One NumPy ``.npz`` file (``numpy.savez``; no pickled objects) with the arrays

    ``bands``        (N, T, C) float surface reflectance in [0, 1] for N pixels, T dates and
                     C bands; NaN marks no-data (clouds, gaps).
    ``band_names``   (C,) strings naming the bands, e.g. ``["B2", "B3", "B4", "B8"]``:
                     Sentinel-2 names (``B1``..``B12``, ``B8A``; zero-padded forms such
                     as ``B02`` too) or ``BLUE``, ``GREEN``, ``RED``, ``NIR``, ``MIR``
                     (e.g. for MODIS), ``SWIR1``/``SWIR2``, any case; ``BLUE``/``GREEN``/
                     ``RED``/``NIR``/``SWIR1``/``SWIR2`` stand for B2/B3/B4/B8/B11/B12 and
                     ``MIR`` for B12, so a name may appear once only. A band may also be a
                     ready-made index series named ``NDVI``, ``EVI``, ``SAVI``, ``NDMI``,
                     ``NBR``, ``NDRE`` or ``NDWI`` (e.g. an NDVI-only stack). Indices are
                     computed from the bands they need where those exist
                     (:mod:`pimc_jax.indices`).
    ``dates``        (T,) dates shared by all pixels, or (N, T) one row per pixel, either
                     as integer days (any origin, e.g. days since 1970-01-01 or day of
                     year) or as ISO date strings ``"2019-04-01"`` (converted to days
                     since 1970-01-01). Strictly increasing along T.
    ``mask``         optional (N, T) bool, True for a real acquisition. A pixel with fewer
                     than T dates has its real dates first and False after them; the
                     padded ``dates``/``bands`` entries are ignored.
    ``labels``       optional (N,) integer class of each pixel, in 0..9999 (``MAX_CLASSES``).
    ``class_names``  optional (K,) strings; then ``labels`` must lie in 0..K-1.
    ``scale``        optional scalar multiplying ``bands`` into reflectance, e.g. 0.0001
                     for Sentinel-2 L2A digital numbers (default 1).
    ``offset``       optional scalar added to ``bands`` before ``scale`` (default 0):
                     reflectance = (bands + offset) × scale, e.g. -1000 for Sentinel-2
                     L2A from processing baseline 04.00 (its ``BOA_ADD_OFFSET``).
    ``valid``        optional (N, T) bool, False for an observation to drop (a cloud mask):
                     it becomes a gap (NaN bands), exactly like NaN or no-data values.
    ``scl``          optional (N, T) integer Sentinel-2 L2A scene classification (SCL,
                     classes 0..11); observations of the classes in ``scl_invalid_classes``
                     become gaps (see "Cloud masks" below).

Example::

    np.savez("pixels.npz", bands=reflectance, band_names=["B2", "B3", "B4", "B8"],
             dates=["2019-04-01", "2019-04-11", "2019-04-21"], labels=classes)

SITS patches (:func:`load_patch_folder`)
----------------------------------------
A directory of ``<name>.npz`` files, one image time series patch each, named freely
(the name becomes the patch id; files are read in sorted order), plus an optional
``metadata.json`` holding defaults for every file. Per file:

    ``bands``        (T, H, W, C) or (T, C, H, W) array, see ``layout``.
    ``dates``        (T,) integer days or ISO date strings, strictly increasing.
    ``labels``       optional (H, W) integer class per pixel, in 0..9999 (``MAX_CLASSES``).
    ``band_names``   (C,) strings (names as above), unless given in metadata.json.
    ``layout``       optional string ``"THWC"`` (default) or ``"TCHW"``.
    ``scale``        optional scalar multiplying ``bands`` into reflectance (default 1).
    ``offset``       optional scalar added before ``scale`` (default 0; as above).
    ``nodata``       optional value of ``bands`` marking no-data (becomes NaN).
    ``fold``         optional integer fold for cross-validation (default 0).
    ``valid``        optional (T, H, W) bool, False for an observation to drop (a gap).
    ``scl``          optional (T, H, W) integer SCL classes (see "Cloud masks" below).
    ``crs``          optional string, the grid's CRS (``"EPSG:32631"`` or WKT), and
    ``transform``    (6,) floats, its affine transform ``(a, b, c, d, e, f)``: kept with
                     the patch, for writing results as GeoTIFF (:mod:`~pimc_jax.data.geotiff`).

A second sensor, Sentinel-1, on the same pixel grid but its own dates (optional; both or
neither of the first two):

    ``s1_bands``      (T1, H, W, C1) or (T1, C1, H, W) as ``layout`` says: backscatter σ0.
    ``s1_dates``      (T1,) integer days or ISO date strings, strictly increasing.
    ``s1_band_names`` (C1,) strings among ``VV``, ``VH`` and ``VV/VH`` (their ratio), any
                      case, unless given in metadata.json.
    ``s1_units``      optional ``"db"`` (default) or ``"linear"`` (power; converted to dB,
                      the ratio channel too; values <= 0 become gaps).
    ``s1_nodata``     optional value of ``s1_bands`` marking no-data (becomes NaN).

``metadata.json`` may give ``band_names``, ``layout``, ``scale``, ``offset``, ``nodata``,
``s1_band_names``, ``s1_units`` and ``s1_nodata`` (keys in a file win over it), e.g.::

    {"band_names": ["B2", "B3", "B4", "B8"], "layout": "TCHW", "scale": 0.0001, "nodata": 0}

``metadata.json`` may also give ``folds``, ``{"<patch id>": fold}`` (ints >= 1) for
patches that carry none themselves (GeoTIFF patches cannot), so the pixel evaluations
split by patch folds. A ``classes.json`` beside them (``{"1": "wheat", "5": "maize"}``)
names the label codes in evaluation results and class maps.

All patches of a folder must have the same band names (and those with Sentinel-1 the
same ``s1_band_names``); their sizes and numbers of dates may differ.

GeoTIFF patches
---------------
The same folder may also hold GeoTIFF time series (read with rasterio), in either layout:

* **one file per date**: a sub-folder ``<name>/`` (the patch id) of ``<YYYY-MM-DD>.tif``
  files (or ``<YYYYMMDD>.tif``, ``.tiff``), each holding the C bands of that date on the
  same grid; optionally ``<YYYY-MM-DD>_SCL.tif`` (one band: that date's SCL, on the
  same grid) and ``labels.tif`` (one band: (H, W) integer classes). A date's bands may
  also come one file per band, named ``<date>_<band>.tif``, ``<band>_<date>.tif`` or as in
  a Sentinel-2 product (``T31UFS_20190401T105031_B04_10m.jp2``; ``.jp2`` files are read
  like ``.tif``), bands ``B1`` … ``B12``,
  ``B8A`` or ``SCL``, every date with the same bands on the same grid (stacked in
  Sentinel-2 band order, named as the files name them).
* **one stack per patch**: ``<name>.tif`` holding T·C bands, with either every band
  description ``<date>_<band>`` (e.g. ``2019-04-01_B4``, ``20190401_SCL``; any order),
  or a sidecar ``<name>.dates.txt`` / ``<name>.dates.csv`` (one ISO date per line, first
  column; a header ``date`` is skipped) with the bands ordered date-major (the C bands of
  the first date, then of the second, ...); optionally ``<name>.labels.tif``.

Band names come from the band descriptions when every band has one (``B4``, ``SCL``,
...), else from ``band_names`` in ``metadata.json`` (C names). A band named ``SCL`` is
the scene classification, not an input band. Each file's own no-data value (and
``nodata`` of ``metadata.json``) marks gaps; ``scale`` of ``metadata.json`` converts
digital numbers to reflectance. The files' CRS and transform must agree within a patch
and are kept with it (:attr:`Patch.crs <pimc_jax.data.patches.Patch>`, ``transform``).

Cloud masks
-----------
An observation (one pixel at one date) is a gap, its bands NaN, where the value is NaN
or no-data, where ``valid`` is False, or where its SCL class is one of
``scl_invalid_classes`` (config key ``data.scl_invalid_classes``), by default
:data:`DEFAULT_SCL_INVALID_CLASSES`: 0 no data, 1 saturated or defective, 3 cloud
shadow, 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus. Snow (11)
is kept by default: add 11 to drop it; dark areas (2), vegetation (4), bare soil (5),
water (6) and unclassified (7) are kept.

Problems are reported as ``ValueError`` naming the file and what is wrong.

The readers: :mod:`~pimc_jax.data.pixel_files` (pixel series),
:mod:`~pimc_jax.data.patch_folders` (a folder of ``.npz`` patches),
:mod:`~pimc_jax.data.geotiff_patches` (GeoTIFF patches) and the field checks they share,
:mod:`~pimc_jax.data.user_fields`; this module gathers their public names.
"""

from pimc_jax.data.patch_folders import (
    PatchSource,
    load_patch_folder,
    patch_sources,
    read_class_table,
)
from pimc_jax.data.pixel_files import PixelSeries, load_pixel_npz
from pimc_jax.data.user_fields import (
    DEFAULT_SCL_INVALID_CLASSES,
    MAX_CLASSES,
    SCL_CLASS_NAMES,
    check_scl_classes,
    dates_to_days,
    is_known_band_name,
    observation_gaps,
)

__all__ = [
    "DEFAULT_SCL_INVALID_CLASSES",
    "MAX_CLASSES",
    "SCL_CLASS_NAMES",
    "PixelSeries",
    "check_scl_classes",
    "dates_to_days",
    "is_known_band_name",
    "load_patch_folder",
    "patch_sources",
    "read_class_table",
    "PatchSource",
    "load_pixel_npz",
    "observation_gaps",
]
