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

``metadata.json`` may give ``band_names``, ``layout``, ``scale``, ``nodata``,
``s1_band_names``, ``s1_units`` and ``s1_nodata`` (keys in a file win over it), e.g.::

    {"band_names": ["B2", "B3", "B4", "B8"], "layout": "TCHW", "scale": 0.0001, "nodata": 0}

All patches of a folder must have the same band names (and those with Sentinel-1 the
same ``s1_band_names``); their sizes and numbers of dates may differ.

GeoTIFF patches
---------------
The same folder may also hold GeoTIFF time series (read with rasterio), in either layout:

* **one file per date**: a sub-folder ``<name>/`` (the patch id) of ``<YYYY-MM-DD>.tif``
  files (or ``<YYYYMMDD>.tif``, ``.tiff``), each holding the C bands of that date on the
  same grid; optionally ``<YYYY-MM-DD>_SCL.tif`` (one band: that date's SCL, on the
  same grid) and ``labels.tif`` (one band: (H, W) integer classes).
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
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pimc_jax import progress as progress_lib
from pimc_jax.data import validate
from pimc_jax.data.patches import Patch, series_dates
from pimc_jax.data.radar import linear_to_db
from pimc_jax.indices import (
    BAND_TABLES,
    INDEX_NAMES,
    canonical_band_name,
    check_radar_band_names,
    resolve_band_names,
)

if TYPE_CHECKING:  # GeoTIFF reading imports rasterio only when a folder holds GeoTIFFs
    from pimc_jax.data.geotiff import Raster

_S2_BANDS = frozenset({*(f"B{number}" for number in range(1, 13)), "B8A"})
#: Canonical names accepted in user files: Sentinel-2 bands, every name of the band
#: tables (MODIS ``BLUE``, ``RED``, ``NIR``, ``MIR``), the aliases, which
#: :func:`~pimc_jax.indices.canonical_band_name` maps onto Sentinel-2 bands, and
#: ready-made index series (``NDVI``, ``EVI``, ...; :data:`~pimc_jax.indices.INDEX_NAMES`).
_KNOWN_BANDS = (
    _S2_BANDS
    | {canonical_band_name(name) for names in BAND_TABLES.values() for name in names}
    | {name.upper() for name in INDEX_NAMES}
)
_LAYOUTS = ("THWC", "TCHW")
_S1_UNITS = ("db", "linear")
_S1_KEYS = ("s1_band_names", "s1_units", "s1_nodata")
_METADATA_KEYS = ("band_names", "layout", "scale", "nodata", *_S1_KEYS)

#: SCL classes that are gaps by default (module docstring, "Cloud masks"): no data,
#: saturated or defective, cloud shadow, cloud medium and high probability, thin cirrus.
DEFAULT_SCL_INVALID_CLASSES: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
#: The Sentinel-2 L2A scene classification.
SCL_CLASS_NAMES: tuple[str, ...] = (
    "no data",
    "saturated or defective",
    "dark area pixels",
    "cloud shadows",
    "vegetation",
    "not vegetated",
    "water",
    "unclassified",
    "cloud medium probability",
    "cloud high probability",
    "thin cirrus",
    "snow",
)
_SCL_NAME = "SCL"
_TIFF_SUFFIXES = (".tif", ".tiff")


def is_known_band_name(name: str) -> bool:
    """Whether ``name`` is a Sentinel-2 or MODIS band, an alias or an index (module docstring)."""
    return canonical_band_name(name) in _KNOWN_BANDS


@dataclasses.dataclass(frozen=True)
class PixelSeries:
    """Pixel time series read by :func:`load_pixel_npz`.

    Attributes:
      bands: (N, T, C) float32 reflectance; NaN = no-data, and NaN at padded dates.
      dates: (N, T) float32 days; padded entries repeat the pixel's last real date.
      mask: (N, T) bool, True = real acquisition.
      band_names: C band names.
      labels: (N,) int32 classes, or None.
      class_names: K class names, or None.
    """

    bands: np.ndarray
    dates: np.ndarray
    mask: np.ndarray
    band_names: tuple[str, ...]
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None

    @property
    def num_pixels(self) -> int:
        return self.bands.shape[0]

    def as_batch(self) -> dict[str, np.ndarray]:
        """The pixel-series batch dict: ``bands``, ``dates``, ``mask`` [, ``labels``]."""
        batch = {"bands": self.bands, "dates": self.dates, "mask": self.mask}
        if self.labels is not None:
            batch["labels"] = self.labels
        return batch


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"{path}: not a readable .npz file without pickled objects ({err})"
        ) from None


def _band_names(value: Any, num_bands: int, where: str) -> tuple[str, ...]:
    names = np.asarray(value)
    if names.ndim != 1 or not (names.dtype.kind in "US" or names.size == 0):
        raise ValueError(f"{where}: band_names must be a 1-D array of strings")
    names = tuple(str(n.decode() if isinstance(n, bytes) else n).strip() for n in names.tolist())
    if len(names) != num_bands:
        raise ValueError(f"{where}: bands have {num_bands} bands but band_names has {len(names)}")
    unknown = [name for name in names if not is_known_band_name(name)]
    if unknown:
        raise ValueError(
            f"{where}: unknown band names {unknown}; use Sentinel-2 names (B1..B12, B8A, "
            "or zero-padded B01..B12, B08A), BLUE, GREEN, RED, NIR, SWIR1, SWIR2, MIR, "
            "or an index name (NDVI, EVI, ...)"
        )
    try:
        return resolve_band_names(names)  # rejects two names for the same band
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def dates_to_days(value: Any, where: str = "dates") -> np.ndarray:
    """Dates as float64 days since 1970-01-01: integer days, ISO strings or datetime64.

    Args:
      value: an array (any shape) of integer or whole float days, ISO date strings
        (``"2019-04-01"``, str or bytes), ``datetime64`` values, or Python date objects.
      where: prefix of error messages (a file name, or ``"dates"``).

    Returns:
      float64 array of ``value``'s shape; NaN stays NaN.

    Raises:
      ValueError: unparseable strings, fractional days, or another dtype.
    """
    value = np.asarray(value)
    if value.dtype.kind in "USO":
        flat = [str(v.decode() if isinstance(v, bytes) else v).strip() for v in value.ravel()]
        try:
            days = np.array(flat, dtype="datetime64[D]").astype(np.int64)
        except ValueError as err:
            raise ValueError(
                f"{where}: dates are not ISO dates like '2019-04-01' ({err})"
            ) from None
        return days.astype(np.float64).reshape(value.shape)
    if value.dtype.kind == "M":
        return value.astype("datetime64[D]").astype(np.int64).astype(np.float64)
    if value.dtype.kind in "iu":
        return value.astype(np.float64)
    if value.dtype.kind == "f":
        finite = value[np.isfinite(value)]
        if not np.all(finite == np.round(finite)):
            raise ValueError(f"{where}: dates must be whole days")
        return value.astype(np.float64)
    raise ValueError(f"{where}: dates must be integer days or ISO strings, got {value.dtype}")


def _scale(value: Any, where: str) -> float:
    return validate.check_scale(value, where)


def _nodata(value: Any, key: str, where: str) -> np.ndarray:
    """A no-data setting checked to be one number."""
    nodata = np.asarray(value)
    if nodata.shape != () or nodata.dtype.kind not in "iuf":
        raise ValueError(f"{where}: {key} must be a number, got {value!r}")
    return nodata


def _thwc(value: np.ndarray, key: str, layout: str, where: str) -> np.ndarray:
    """A 4-D numeric array of ``layout`` as ``(T, H, W, C)``."""
    array = _numeric(value, key, where)
    if array.ndim != 4:
        raise ValueError(f"{where}: {key} must be 4-D ({layout}), got shape {array.shape}")
    return np.transpose(array, (0, 2, 3, 1)) if layout == "TCHW" else array


def _numeric(value: np.ndarray, key: str, where: str) -> np.ndarray:
    if value.dtype.kind not in "iuf":
        raise ValueError(f"{where}: {key} must be numeric, got dtype {value.dtype}")
    return value


# Labels are class indices 0..MAX_CLASSES-1: the evaluations size their outputs (and
# confusion matrices) by the largest label, so a stray huge label must not reach them.
MAX_CLASSES = 10_000


def _labels(value: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Integer class labels of the given shape, as int32, each in ``0..MAX_CLASSES-1``."""
    labels = _numeric(value, "labels", where)
    if labels.shape != shape:
        raise ValueError(f"{where}: labels must have shape {shape}, got {labels.shape}")
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise ValueError(f"{where}: labels must be integers")
    out_of_range = np.flatnonzero((labels < 0) | (labels >= MAX_CLASSES))
    if out_of_range.size:
        bad = labels.flat[out_of_range[0]]
        bad = int(bad) if np.isfinite(bad) else bad
        raise ValueError(
            f"{where}: label {bad} is out of range: labels are class indices in "
            f"0..{MAX_CLASSES - 1} ({out_of_range.size} pixel(s) outside)"
        )
    return labels.astype(np.int32)


def check_scl_classes(classes: Any) -> tuple[int, ...]:
    """``scl_invalid_classes`` checked: a sequence of distinct SCL classes in 0..11.

    Raises:
      ValueError: one line naming the setting and the bad value.
    """
    values = tuple(np.atleast_1d(np.asarray(classes, dtype=object)).tolist())
    num_classes = len(SCL_CLASS_NAMES)
    bad = [
        value
        for value in values
        if isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not 0 <= value < num_classes
    ]
    if bad or len(set(values)) != len(values):
        raise ValueError(
            f"scl_invalid_classes must be distinct SCL classes in 0..{num_classes - 1}, "
            f"got {classes!r}"
        )
    return tuple(int(value) for value in values)


def observation_gaps(
    shape: tuple[int, ...],
    *,
    valid: Any = None,
    scl: Any = None,
    scl_invalid_classes: Sequence[int] = DEFAULT_SCL_INVALID_CLASSES,
    where: str = "",
) -> np.ndarray | None:
    """Which observations a validity mask and an SCL layer make gaps (module docstring).

    Args:
      shape: the observations' shape, ``(T, H, W)`` for a patch or ``(N, T)`` for pixels.
      valid: optional bool array of ``shape``, False = drop the observation.
      scl: optional integer array of ``shape``, Sentinel-2 L2A SCL classes 0..11.
      scl_invalid_classes: SCL classes that are gaps.
      where: prefix of error messages (a file name).

    Returns:
      A bool array of ``shape``, True = gap, or None when neither ``valid`` nor ``scl``
      is given.

    Raises:
      ValueError: one line: a mask or SCL of the wrong shape or dtype, SCL values outside
        0..11.
    """
    prefix = f"{where}: " if where else ""
    gaps = None
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != tuple(shape) or valid.dtype != np.bool_:
            raise ValueError(
                f"{prefix}valid must be bool with shape {tuple(shape)}, "
                f"got {valid.dtype} {valid.shape}"
            )
        gaps = ~valid
    if scl is not None:
        scl = np.asarray(scl)
        if scl.shape != tuple(shape) or scl.dtype.kind not in "iu":
            raise ValueError(
                f"{prefix}scl must be integer SCL classes with shape {tuple(shape)}, "
                f"got {scl.dtype} {scl.shape}"
            )
        outside = (scl < 0) | (scl >= len(SCL_CLASS_NAMES))
        if np.any(outside):
            raise ValueError(
                f"{prefix}scl value {int(scl[outside].flat[0])} is not an SCL class "
                f"(0..{len(SCL_CLASS_NAMES) - 1}; {int(outside.sum())} value(s) outside)"
            )
        classes = np.asarray(check_scl_classes(scl_invalid_classes), np.int64)
        cloudy = np.isin(scl, classes)
        gaps = cloudy if gaps is None else gaps | cloudy
    return gaps


def load_pixel_npz(
    path: str | os.PathLike[str],
    *,
    scl_invalid_classes: Sequence[int] = DEFAULT_SCL_INVALID_CLASSES,
) -> PixelSeries:
    """Reads pixel time series from the ``.npz`` format in the module docstring.

    ``scl_invalid_classes``: the SCL classes that are gaps (``data.scl_invalid_classes``).

    Returns:
      A :class:`PixelSeries`: bands (N, T, C) float32, dates (N, T) float32 days,
      mask (N, T) bool, band names, labels (N,) int32 or None, class names or None.

    Raises:
      ValueError naming the file and the problem (missing key, wrong number of
      dimensions, band count vs band_names, dates length vs T, dates not strictly
      increasing, unknown band name, labels out of range, ...).
    """
    path = Path(path)
    where = str(path)
    arrays = _load_npz(path)
    missing = [key for key in ("bands", "band_names", "dates") if key not in arrays]
    if missing:
        raise ValueError(f"{where}: missing arrays {missing} (has {sorted(arrays)})")

    bands = _numeric(arrays["bands"], "bands", where)
    if bands.ndim != 3:
        raise ValueError(f"{where}: bands must be (N, T, C), got shape {bands.shape}")
    num_pixels, num_dates, num_bands = bands.shape
    if num_pixels == 0 or num_dates == 0:
        raise ValueError(f"{where}: bands shape {bands.shape} has no pixel or no date")
    band_names = _band_names(arrays["band_names"], num_bands, where)
    bands = bands.astype(np.float32)
    if "scale" in arrays:
        bands = bands * np.float32(_scale(arrays["scale"], where))
    gaps = observation_gaps(
        (num_pixels, num_dates),
        valid=arrays.get("valid"),
        scl=arrays.get("scl"),
        scl_invalid_classes=scl_invalid_classes,
        where=where,
    )
    if gaps is not None:
        bands[gaps] = np.nan

    dates = series_dates(dates_to_days(arrays["dates"], where), num_pixels, num_dates, where)

    if "mask" in arrays:
        mask = arrays["mask"]
        if mask.shape != (num_pixels, num_dates) or mask.dtype != np.bool_:
            raise ValueError(
                f"{where}: mask must be bool with shape ({num_pixels}, {num_dates}), "
                f"got {mask.dtype} {mask.shape}"
            )
        lengths = mask.sum(axis=1)
        prefix = np.arange(num_dates)[None, :] < lengths[:, None]
        if np.any(mask != prefix) or np.any(lengths == 0):
            raise ValueError(
                f"{where}: each mask row must be True for the real dates first, then False, "
                "with at least one True"
            )
    else:
        mask = np.ones((num_pixels, num_dates), bool)
        lengths = np.full((num_pixels,), num_dates)

    if np.any(~np.isfinite(dates[mask])):
        raise ValueError(f"{where}: dates are missing (NaN) at real acquisitions; give a mask")
    steps = np.diff(dates, axis=1)
    if np.any((steps <= 0) & mask[:, 1:]):
        pixel = int(np.argwhere((steps <= 0) & mask[:, 1:])[0, 0])
        raise ValueError(f"{where}: dates are not strictly increasing (pixel {pixel})")
    last_date = dates[np.arange(num_pixels), lengths - 1]
    dates = np.where(mask, dates, last_date[:, None]).astype(np.float32)
    bands = np.where(mask[:, :, None], bands, np.nan).astype(np.float32)

    labels = class_names = None
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise ValueError(f"{where}: class_names must be a 1-D array of strings")
        class_names = tuple(str(name) for name in names.tolist())
        if "labels" not in arrays:
            raise ValueError(f"{where}: class_names given without labels")
    if "labels" in arrays:
        labels = _labels(arrays["labels"], (num_pixels,), where)
        if class_names is not None and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(
                f"{where}: labels must lie in 0..{len(class_names) - 1} "
                f"({len(class_names)} class_names), got {labels.min()}..{labels.max()}"
            )
    kept = validate.check_reflectance(bands, band_names, where, scaled="scale" in arrays)
    if len(kept) < len(band_names):  # bands without any value are dropped (warned above)
        bands = bands[..., list(kept)]
        band_names = tuple(band_names[k] for k in kept)
    validate.check_classes(labels, where)
    return PixelSeries(
        bands=bands,
        dates=dates,
        mask=mask.copy(),
        band_names=band_names,
        labels=labels,
        class_names=class_names,
    )


def _read_folder_metadata(folder: Path) -> dict[str, Any]:
    meta_file = folder / "metadata.json"
    if not meta_file.is_file():
        return {}
    try:
        metadata = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_file}: not valid JSON ({err})") from None
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{meta_file}: expected a JSON object")
    unknown = sorted(set(metadata) - set(_METADATA_KEYS))
    if unknown:
        raise ValueError(
            f"{meta_file}: unknown keys {unknown}; allowed: {', '.join(_METADATA_KEYS)}"
        )
    return dict(metadata)


def _read_patch_file(
    path: Path, defaults: Mapping[str, Any], scl_invalid_classes: Sequence[int]
) -> Patch:
    where = str(path)
    arrays = _load_npz(path)
    for key in ("bands", "dates"):
        if key not in arrays:
            raise ValueError(f"{where}: missing array {key!r} (has {sorted(arrays)})")
    settings = {**defaults, **{k: arrays[k] for k in ("band_names", "layout") if k in arrays}}
    for key in ("scale", "nodata"):
        if key in arrays:
            settings[key] = arrays[key]
    if "band_names" not in settings:
        raise ValueError(f"{where}: no band_names in the file or in metadata.json")

    layout = str(np.asarray(settings.get("layout", "THWC"))).upper()
    if layout not in _LAYOUTS:
        raise ValueError(f"{where}: layout must be one of {_LAYOUTS}, got {layout!r}")
    bands = _thwc(arrays["bands"], "bands", layout, where)
    num_dates, height, width, num_bands = bands.shape
    if num_dates == 0:
        raise ValueError(f"{where}: bands shape {arrays['bands'].shape} has no date")
    try:
        band_names = _band_names(settings["band_names"], num_bands, where)
    except ValueError as err:
        if len(np.atleast_1d(settings["band_names"])) != num_bands:
            raise ValueError(f"{err} (is layout {layout!r} right?)") from None
        raise

    values = bands.astype(np.float32)
    if settings.get("nodata") is not None:
        nodata = _nodata(settings["nodata"], "nodata", where)
        values = np.where(bands == nodata, np.float32(np.nan), values)
    if "scale" in settings:
        values = values * np.float32(_scale(settings["scale"], where))
    gaps = observation_gaps(
        (num_dates, height, width),
        valid=arrays.get("valid"),
        scl=arrays.get("scl"),
        scl_invalid_classes=scl_invalid_classes,
        where=where,
    )
    if gaps is not None:
        values = np.where(gaps[..., None], np.float32(np.nan), values)

    dates = dates_to_days(arrays["dates"], where)
    if dates.shape != (num_dates,):
        raise ValueError(
            f"{where}: dates must have shape ({num_dates},) to match bands "
            f"(T = {num_dates}), got {dates.shape}"
        )
    if not np.all(np.isfinite(dates)):
        raise ValueError(f"{where}: dates contain NaN")
    if np.any(np.diff(dates) <= 0):
        raise ValueError(f"{where}: dates are not strictly increasing")

    labels = None
    if "labels" in arrays:
        labels = _labels(arrays["labels"], (height, width), where)
    fold = 0
    if "fold" in arrays:
        fold_value = arrays["fold"]
        if fold_value.shape != () or fold_value.dtype.kind not in "iu":
            raise ValueError(f"{where}: fold must be an integer scalar")
        fold = int(fold_value)
    crs, transform = _npz_georeference(arrays, where)
    return Patch(
        bands=values,
        dates=dates.astype(np.int32),
        band_names=band_names,
        labels=labels,
        patch_id=path.stem,
        fold=fold,
        crs=crs,
        transform=transform,
        **_npz_s1(arrays, defaults, layout, (height, width), where),
    )


def _npz_s1(
    arrays: Mapping[str, np.ndarray],
    defaults: Mapping[str, Any],
    layout: str,
    size: tuple[int, int],
    where: str,
) -> dict[str, Any]:
    """The Sentinel-1 fields of a patch file (module docstring), or ``{}`` without them.

    Returns:
      ``s1_bands`` (T1, H, W, C1) float32 dB (NaN = no-data), ``s1_dates`` (T1,) int32,
      ``s1_band_names`` canonical names.
    """
    if "s1_bands" not in arrays and "s1_dates" not in arrays:
        return {}
    if "s1_bands" not in arrays or "s1_dates" not in arrays:
        raise ValueError(f"{where}: give both s1_bands and s1_dates, or neither")
    settings = {key: defaults[key] for key in _S1_KEYS if key in defaults}
    settings.update({key: arrays[key] for key in _S1_KEYS if key in arrays})
    if "s1_band_names" not in settings:
        raise ValueError(f"{where}: no s1_band_names in the file or in metadata.json")
    raw = _thwc(arrays["s1_bands"], "s1_bands", layout, where)
    num_dates, height, width, num_bands = raw.shape
    if (height, width) != size:
        raise ValueError(
            f"{where}: s1_bands cover {height} x {width} pixels but bands {size[0]} x {size[1]}; "
            "both sensors must share the pixel grid"
        )
    if num_dates == 0:
        raise ValueError(f"{where}: s1_bands has no date (omit s1_bands and s1_dates instead)")
    names = np.asarray(settings["s1_band_names"])
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise ValueError(f"{where}: s1_band_names must be a 1-D array of strings")
    try:
        s1_names = check_radar_band_names([str(name).strip() for name in names.tolist()])
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    if len(s1_names) != num_bands:
        raise ValueError(
            f"{where}: s1_bands have {num_bands} channels but s1_band_names has {len(s1_names)}"
        )
    units = str(np.asarray(settings.get("s1_units", "db"))).strip().lower()
    if units not in _S1_UNITS:
        raise ValueError(f"{where}: s1_units must be one of {_S1_UNITS}, got {units!r}")
    values = raw.astype(np.float64)
    gaps = ~np.isfinite(values)
    if settings.get("s1_nodata") is not None:
        gaps |= raw == _nodata(settings["s1_nodata"], "s1_nodata", where)
    values[gaps] = np.nan
    if units == "linear":
        values = linear_to_db(values)
    dates = dates_to_days(arrays["s1_dates"], where)
    if dates.shape != (num_dates,):
        raise ValueError(
            f"{where}: s1_dates must have shape ({num_dates},) to match s1_bands "
            f"(T1 = {num_dates}), got {dates.shape}"
        )
    if not np.all(np.isfinite(dates)) or np.any(np.diff(dates) <= 0):
        raise ValueError(f"{where}: s1_dates are missing or not strictly increasing")
    return {
        "s1_bands": values.astype(np.float32),
        "s1_dates": dates.astype(np.int32),
        "s1_band_names": s1_names,
    }


def _npz_georeference(
    arrays: Mapping[str, np.ndarray], where: str
) -> tuple[str | None, tuple[float, ...] | None]:
    """``crs`` (string) and ``transform`` (6 floats) of a patch file, both or neither."""
    if ("crs" in arrays) != ("transform" in arrays):
        raise ValueError(f"{where}: give both crs and transform, or neither")
    if "crs" not in arrays:
        return None, None
    crs = arrays["crs"]
    if crs.shape != () or crs.dtype.kind not in "US" or not crs.item().strip():
        raise ValueError(f"{where}: crs must be a string such as 'EPSG:32631', got {crs!r}")
    transform = arrays["transform"]
    if (
        transform.shape != (6,)
        or transform.dtype.kind not in "iuf"
        or not np.all(np.isfinite(transform))
    ):
        raise ValueError(
            f"{where}: transform must be 6 finite numbers (a, b, c, d, e, f), "
            f"got shape {transform.shape}"
        )
    text = crs.item()
    text = (text.decode() if isinstance(text, bytes) else str(text)).strip()
    return text, tuple(float(v) for v in transform)


def load_patch_folder(
    path: str | os.PathLike[str],
    *,
    scl_invalid_classes: Sequence[int] = DEFAULT_SCL_INVALID_CLASSES,
    progress: bool | None = None,
) -> list[Patch]:
    """Reads a folder of ``<name>.npz`` patches and GeoTIFF patches (module docstring).

    Args:
      path: the folder.
      scl_invalid_classes: the SCL classes that are gaps (``data.scl_invalid_classes``).
      progress: a progress bar over the patches (None: on a terminal only; see
        :mod:`pimc_jax.progress`).

    Returns:
      One :class:`Patch` per ``.npz`` file, GeoTIFF stack or folder of dated GeoTIFFs, in
      sorted file-name order: bands (T, H, W, C) float32 reflectance (NaN = no-data or
      masked), dates (T,) int32 days, labels (H, W) int32 or None, patch_id = file or
      folder name without suffix; GeoTIFF patches (and ``.npz`` files that give them) keep
      ``crs`` and ``transform``.

    Raises:
      ValueError naming the file and the problem.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"patch folder not found: {folder}")
    classes = check_scl_classes(scl_invalid_classes)
    defaults = _read_folder_metadata(folder)
    sources: dict[str, Path] = {}
    for source in sorted(folder.iterdir()):
        if source.name.startswith("."):
            continue
        if source.is_dir():
            if not _tiffs(source):
                continue
        elif source.suffix.lower() in _TIFF_SUFFIXES:
            if source.stem.lower().endswith(".labels"):
                continue
        elif source.suffix != ".npz":
            continue
        name = source.stem if source.is_file() else source.name
        if name in sources:
            raise ValueError(f"{source}: patch id {name!r} is also {sources[name]}")
        sources[name] = source
    if not sources:
        raise ValueError(
            f"{folder}: no .npz patch files, GeoTIFF stacks or folders of dated GeoTIFFs"
        )
    ordered = list(sources.values())  # sorted by file or folder name
    patches = [
        _read_source(source, defaults, classes)
        for source in progress_lib.progress(
            ordered, desc="Reading patches", unit="patch", enabled=progress
        )
    ]
    _check_same_bands(patches, ordered)
    for patch, source in zip(patches, ordered, strict=True):
        validate.check_reflectance(patch.bands, patch.band_names, str(source), scaled=None)
    labelled = [patch.labels for patch in patches if patch.labels is not None]
    if labelled:
        validate.check_classes(
            np.unique(np.concatenate([np.unique(x) for x in labelled])), str(folder)
        )
    return patches


def _read_source(source: Path, defaults: Mapping[str, Any], classes: Sequence[int]) -> Patch:
    if source.is_dir():
        return _read_dated_geotiffs(source, defaults, classes)
    if source.suffix.lower() in _TIFF_SUFFIXES:
        return _read_geotiff_stack(source, defaults, classes)
    return _read_patch_file(source, defaults, classes)


def _check_same_bands(patches: Sequence[Patch], files: Sequence[Path]) -> None:
    first = patches[0].band_names
    first_s1: tuple[tuple[str, ...], Path] | None = None
    for patch, file in zip(patches, files, strict=True):
        if patch.band_names != first:
            raise ValueError(
                f"{file}: band_names {patch.band_names} differ from {first} in {files[0].name}"
            )
        if patch.s1_bands is not None:
            if first_s1 is None:
                first_s1 = (patch.s1_band_names, file)
            elif patch.s1_band_names != first_s1[0]:
                raise ValueError(
                    f"{file}: s1_band_names {patch.s1_band_names} differ from {first_s1[0]} "
                    f"in {first_s1[1].name}"
                )


# --------------------------------------------------------------------------------------
# GeoTIFF patches (module docstring, "GeoTIFF patches").

_DATE_TEXT = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
_SCL_STEM = re.compile(r"^(.+)_scl$", re.IGNORECASE)


def _tiffs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _TIFF_SUFFIXES)


def _parse_date(text: str) -> float | None:
    """``"2019-04-01"`` or ``"20190401"`` → days since 1970-01-01; None if not a date."""
    match = _DATE_TEXT.match(text.strip())
    if match is None:
        return None
    try:
        return float(dates_to_days("-".join(match.groups())))
    except ValueError:  # e.g. month 13
        return None


def _same_grid(raster: Raster, reference: Raster, where: str, reference_where: str) -> None:
    if raster.shape != reference.shape:
        raise ValueError(
            f"{where}: size {raster.shape} differs from {reference.shape} of {reference_where}"
        )
    if raster.crs != reference.crs or not np.allclose(raster.transform, reference.transform):
        raise ValueError(
            f"{where}: CRS/transform ({raster.crs}, {raster.transform}) differ from those of "
            f"{reference_where} ({reference.crs}, {reference.transform})"
        )


def _raster_band_names(
    descriptions: Sequence[str], defaults: Mapping[str, Any], num_bands: int, where: str
) -> list[str]:
    """Band descriptions when every band has one, else ``band_names`` of metadata.json."""
    if descriptions and all(descriptions):
        names = list(descriptions)
    elif "band_names" in defaults:
        names = [str(name).strip() for name in np.atleast_1d(defaults["band_names"])]
    else:
        raise ValueError(
            f"{where}: no band names: give every band a description (B4, SCL, ...) or "
            "band_names in metadata.json"
        )
    if len(names) != num_bands:
        raise ValueError(f"{where}: {num_bands} bands but {len(names)} band names {names}")
    return names


def _single_band(path: Path, reference: Raster, reference_where: str) -> np.ma.MaskedArray:
    """The one band of ``path`` (on ``reference``'s grid), with no-data as a mask array."""
    from pimc_jax.data import geotiff

    raster = geotiff.read_raster(path)
    if raster.values.shape[0] != 1:
        raise ValueError(f"{path}: expected one band, got {raster.values.shape[0]}")
    _same_grid(raster, reference, str(path), reference_where)
    return np.ma.masked_array(raster.values[0], raster.gaps()[0])


def _integer_layer(layer: np.ndarray, what: str, where: str) -> np.ndarray:
    """``(H, W)`` SCL or label band (a masked array) as int64; masked pixels hold 0 when the
    band is float, their stored value otherwise (callers decide what they mean)."""
    data = np.ma.getdata(layer)
    if data.dtype.kind == "f":
        finite = data[~np.ma.getmaskarray(layer)]
        if not np.all(finite == np.round(finite)):
            raise ValueError(f"{where}: the {what} band must hold integer classes")
        data = np.where(np.ma.getmaskarray(layer), 0, data)
    return data.astype(np.int64)


def _assemble_geotiff_patch(
    where: str,
    patch_id: str,
    dates: np.ndarray,
    raw: np.ndarray,
    raw_gaps: np.ndarray,
    names: Sequence[str],
    scl_layers: Sequence[np.ndarray | None],
    labels: np.ndarray | None,
    raster: Raster,
    defaults: Mapping[str, Any],
    classes: Sequence[int],
) -> Patch:
    """One patch from ``raw`` ``(T, B, H, W)`` stored values (B bands named ``names``, an
    ``SCL`` among them or not), their ``(T, B, H, W)`` no-data gaps and per-date
    separate SCL layers ``(H, W)`` (masked arrays, or None)."""
    upper = [name.upper() for name in names]
    if upper.count(_SCL_NAME) > 1:
        raise ValueError(f"{where}: more than one band named SCL")
    num_dates, _, height, width = raw.shape
    scl_band = upper.index(_SCL_NAME) if _SCL_NAME in upper else None
    keep = [index for index in range(len(names)) if index != scl_band]
    if not keep:
        raise ValueError(f"{where}: no band besides SCL")
    band_names = _band_names(np.array([names[i] for i in keep]), len(keep), where)

    values = raw[:, keep].astype(np.float32)
    gaps = raw_gaps[:, keep]
    nodata = defaults.get("nodata")
    if nodata is not None:
        gaps = gaps | (raw[:, keep] == _nodata(nodata, "nodata", where))
    values[gaps] = np.nan
    if "scale" in defaults:
        values *= np.float32(_scale(defaults["scale"], where))

    masked = np.zeros((num_dates, height, width), bool)
    for date in range(num_dates):
        layers = [] if scl_layers[date] is None else [scl_layers[date]]
        if scl_band is not None:
            layers.append(np.ma.masked_array(raw[date, scl_band], raw_gaps[date, scl_band]))
        for layer in layers:
            scl = _integer_layer(layer, "SCL", where)
            scl[np.ma.getmaskarray(layer)] = 0  # the SCL band's own no-data: class 0
            masked[date] |= observation_gaps(
                (height, width), scl=scl, scl_invalid_classes=classes, where=where
            )
    values[np.broadcast_to(masked[:, None], values.shape)] = np.nan
    return Patch(
        bands=np.ascontiguousarray(values.transpose(0, 2, 3, 1)),
        dates=dates.astype(np.int32),
        band_names=band_names,
        labels=labels,
        patch_id=patch_id,
        crs=raster.crs,
        transform=tuple(raster.transform),
    )


def _read_labels(path: Path, reference: Raster, reference_where: str) -> np.ndarray:
    layer = _single_band(path, reference, reference_where)
    if np.any(np.ma.getmaskarray(layer)):
        raise ValueError(f"{path}: labels hold no-data pixels; give every pixel a class")
    return _labels(_integer_layer(layer, "labels", str(path)), reference.shape, str(path))


def _read_dated_geotiffs(
    folder: Path, defaults: Mapping[str, Any], classes: Sequence[int]
) -> Patch:
    """A patch from ``folder/<YYYY-MM-DD>.tif`` files (module docstring)."""
    from pimc_jax.data import geotiff

    data: dict[float, Path] = {}
    scl_files: dict[float, Path] = {}
    labels_file = None
    for file in _tiffs(folder):
        stem = file.stem
        scl_match = _SCL_STEM.match(stem)
        day = _parse_date(scl_match.group(1) if scl_match else stem)
        if stem.lower() == "labels":
            labels_file = file
        elif day is None:
            raise ValueError(
                f"{file}: GeoTIFFs of a patch folder are named <YYYY-MM-DD>.tif, "
                "<YYYY-MM-DD>_SCL.tif or labels.tif"
            )
        else:
            target = scl_files if scl_match else data
            if day in target:
                raise ValueError(f"{file}: date {stem} appears twice (also {target[day].name})")
            target[day] = file
    if not data:
        raise ValueError(f"{folder}: no <YYYY-MM-DD>.tif band file")
    orphans = sorted(scl_files.keys() - data.keys())
    if orphans:
        raise ValueError(f"{scl_files[orphans[0]]}: SCL file without a band file of that date")
    days = sorted(data)
    first_where = str(data[days[0]])
    first = geotiff.read_raster(data[days[0]])
    names = _raster_band_names(first.descriptions, defaults, first.values.shape[0], first_where)
    raws, raw_gaps = [], []
    for day in days:
        where = str(data[day])
        raster = first if day == days[0] else geotiff.read_raster(data[day])
        _same_grid(raster, first, where, first_where)
        if raster.values.shape[0] != len(names):
            raise ValueError(
                f"{where}: {raster.values.shape[0]} bands but {first_where} has {len(names)}"
            )
        if raster.values.dtype != first.values.dtype:
            raise ValueError(f"{where}: dtype {raster.values.dtype} differs from {first_where}")
        if all(raster.descriptions) and list(raster.descriptions) != names:
            raise ValueError(
                f"{where}: band descriptions {list(raster.descriptions)} differ from {names}"
            )
        raws.append(raster.values)
        raw_gaps.append(raster.gaps())
    scl_layers = [
        _single_band(scl_files[day], first, first_where) if day in scl_files else None
        for day in days
    ]
    labels = None if labels_file is None else _read_labels(labels_file, first, first_where)
    return _assemble_geotiff_patch(
        str(folder),
        folder.name,
        np.array(days),
        np.stack(raws),
        np.stack(raw_gaps),
        names,
        scl_layers,
        labels,
        first,
        defaults,
        classes,
    )


def _read_date_table(path: Path) -> np.ndarray:
    """Days of a ``<name>.dates.txt``/``.csv`` sidecar: one date per line, first column."""
    days = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        field = line.split(",")[0].strip().strip('"')
        if not field or (not days and field.lower() == "date"):
            continue
        day = _parse_date(field)
        if day is None:
            raise ValueError(f"{path}: line {number}: {field!r} is not a date like 2019-04-01")
        days.append(day)
    if not days:
        raise ValueError(f"{path}: no dates")
    return np.array(days)


def _read_geotiff_stack(file: Path, defaults: Mapping[str, Any], classes: Sequence[int]) -> Patch:
    """A patch from one ``<name>.tif`` of T·C bands (module docstring)."""
    from pimc_jax.data import geotiff

    where = str(file)
    raster = geotiff.read_raster(file)
    num_bands = raster.values.shape[0]
    gaps = raster.gaps()
    parsed = [_split_description(text) for text in raster.descriptions]
    if all(item is not None for item in parsed):
        days = sorted({day for day, _ in parsed})
        names = [name for day, name in parsed if day == days[0]]
        index = {(day, name.upper()): band for band, (day, name) in enumerate(parsed)}
        if len(index) != num_bands or len(days) * len(names) != num_bands:
            raise ValueError(
                f"{where}: band descriptions must name each (date, band) once, with the same "
                f"bands at every date ({len(days)} dates, bands {names}, {num_bands} bands)"
            )
        try:
            order = [[index[(day, name.upper())] for name in names] for day in days]
        except KeyError as err:
            raise ValueError(f"{where}: no band described as {err.args[0]}") from None
        raw, raw_gaps = raster.values[np.array(order)], gaps[np.array(order)]
        dates = np.array(days)
    else:
        table = _sidecar(file, "dates", (".txt", ".csv"))
        if table is None:
            raise ValueError(
                f"{where}: no dates: describe every band as <date>_<band> (2019-04-01_B4) or "
                f"add {file.stem}.dates.txt"
            )
        dates = _read_date_table(table)
        if np.any(np.diff(dates) <= 0):
            raise ValueError(f"{table}: dates are not strictly increasing")
        if "band_names" not in defaults:
            raise ValueError(f"{where}: with a date table, give band_names in metadata.json")
        names = [str(name).strip() for name in np.atleast_1d(defaults["band_names"])]
        if len(dates) * len(names) != num_bands:
            raise ValueError(
                f"{where}: {num_bands} bands, but {len(dates)} dates in {table.name} × "
                f"{len(names)} band_names = {len(dates) * len(names)}"
            )
        shape = (len(dates), len(names), *raster.shape)
        raw, raw_gaps = raster.values.reshape(shape), gaps.reshape(shape)
    labels_file = _sidecar(file, "labels", _TIFF_SUFFIXES)
    labels = None if labels_file is None else _read_labels(labels_file, raster, where)
    return _assemble_geotiff_patch(
        where,
        file.stem,
        dates,
        raw,
        raw_gaps,
        names,
        [None] * len(dates),
        labels,
        raster,
        defaults,
        classes,
    )


def _sidecar(file: Path, kind: str, suffixes: Sequence[str]) -> Path | None:
    """The first existing ``<stem>.<kind><suffix>`` next to ``file``, or None."""
    candidates = (file.with_name(f"{file.stem}.{kind}{suffix}") for suffix in suffixes)
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def _split_description(text: str) -> tuple[float, str] | None:
    """``"2019-04-01_B4"`` → (days, ``"B4"``); None when not of that form."""
    date, sep, name = text.partition("_")
    day = _parse_date(date) if sep else None
    if day is None or not name.strip():
        return None
    return day, name.strip()
