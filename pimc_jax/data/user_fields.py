"""The fields of the user formats (:mod:`pimc_jax.data.user`), each read and checked.

Band names and the names a file may use, dates as days, no-data values, layouts, class
labels, Sentinel-2 SCL classes and the gaps a validity mask or an SCL layer makes: the
checks every pixel file (:mod:`~pimc_jax.data.pixel_files`), patch file
(:mod:`~pimc_jax.data.patch_folders`) and GeoTIFF patch
(:mod:`~pimc_jax.data.geotiff_patches`) share. Each raises a one-line ``ValueError``
naming the file, the field and the fix.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pimc_jax.indices import (
    BAND_TABLES,
    INDEX_NAMES,
    canonical_band_name,
    resolve_band_names,
)

_S2_BANDS = frozenset({*(f"B{number}" for number in range(1, 13)), "B8A"})
#: Canonical names accepted in user files: Sentinel-2 bands, every name of the band
#: tables (MODIS ``BLUE``, ``RED``, ``NIR``, ``MIR``), the aliases, which
#: :func:`~pimc_jax.indices.canonical_band_name` maps onto Sentinel-2 bands, and
#: ready-made index series (``NDVI``, ``EVI``, ...; :data:`~pimc_jax.indices.INDEX_NAMES`).
KNOWN_BANDS = (
    _S2_BANDS
    | {canonical_band_name(name) for names in BAND_TABLES.values() for name in names}
    | {name.upper() for name in INDEX_NAMES}
)
#: Array layouts of a patch file's ``bands`` (``layout`` key).
LAYOUTS = ("THWC", "TCHW")
S1_UNITS = ("db", "linear")
S1_KEYS = ("s1_band_names", "s1_units", "s1_nodata")
#: The keys a patch folder's ``metadata.json`` may set.
METADATA_KEYS = ("band_names", "layout", "scale", "offset", "nodata", "folds", *S1_KEYS)

#: SCL classes that are gaps by default (:mod:`pimc_jax.data.user`, "Cloud masks"): no data,
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
SCL_NAME = "SCL"
TIFF_SUFFIXES = (".tif", ".tiff", ".jp2")


def is_known_band_name(name: str) -> bool:
    """Whether ``name`` is a band, an alias or an index that :mod:`pimc_jax.data.user` accepts."""
    return canonical_band_name(name) in KNOWN_BANDS


def load_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file at ``path`` (pickled objects refused)."""
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"{path}: not a readable .npz file without pickled objects ({err})"
        ) from None


def check_band_names(value: Any, num_bands: int, where: str) -> tuple[str, ...]:
    """``num_bands`` distinct known band names (:mod:`pimc_jax.data.user`)."""
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
        return _in_day_range(value.astype("datetime64[D]").astype(np.int64), where)
    if value.dtype.kind in "iu":
        return _in_day_range(value, where)
    if value.dtype.kind == "f":
        finite = value[np.isfinite(value)]
        if not np.all(finite == np.round(finite)):
            raise ValueError(f"{where}: dates must be whole days")
        return _in_day_range(value, where)
    raise ValueError(f"{where}: dates must be integer days or ISO strings, got {value.dtype}")


#: Largest ``|days since 1970-01-01|`` a date may have (years 768 BC to 4707 AD): beyond
#: it a number is not a day count (float32, which the model reads, also stops being exact).
MAX_ABS_DAYS = 1_000_000


def _in_day_range(days: np.ndarray, where: str) -> np.ndarray:
    """``days`` as float64, if every finite one is within :data:`MAX_ABS_DAYS`."""
    days = days.astype(np.float64)
    finite = days[np.isfinite(days)]
    if finite.size and np.abs(finite).max() > MAX_ABS_DAYS:
        bad = finite[np.abs(finite) > MAX_ABS_DAYS][0]
        hint = (
            "these look like YYYYMMDD numbers: give ISO strings like '2019-04-01'"
            if 1e7 <= bad < 1e8
            else "give days since 1970-01-01 or ISO strings like '2019-04-01'"
        )
        raise ValueError(
            f"{where}: date {bad:.10g} is not a day count within ±{MAX_ABS_DAYS:,}; {hint}"
        )
    return days


def check_nodata(value: Any, key: str, where: str) -> np.ndarray:
    """A no-data setting checked to be one number."""
    nodata = np.asarray(value)
    if nodata.shape != () or nodata.dtype.kind not in "iuf":
        raise ValueError(f"{where}: {key} must be a number, got {value!r}")
    return nodata


def as_thwc(value: np.ndarray, key: str, layout: str, where: str) -> np.ndarray:
    """A 4-D numeric array of ``layout`` as ``(T, H, W, C)``."""
    array = check_numeric(value, key, where)
    if array.ndim != 4:
        raise ValueError(f"{where}: {key} must be 4-D ({layout}), got shape {array.shape}")
    return np.transpose(array, (0, 2, 3, 1)) if layout == "TCHW" else array


def check_numeric(value: np.ndarray, key: str, where: str) -> np.ndarray:
    """``value`` itself, checked to be of an integer or float dtype."""
    if value.dtype.kind not in "iuf":
        raise ValueError(f"{where}: {key} must be numeric, got dtype {value.dtype}")
    return value


# Labels are class indices 0..MAX_CLASSES-1: the evaluations size their outputs (and
# confusion matrices) by the largest label, so a stray huge label must not reach them.
MAX_CLASSES = 10_000


def check_labels(value: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Integer class labels of the given shape, as int32, each in ``0..MAX_CLASSES-1``."""
    labels = check_numeric(value, "labels", where)
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
    """Which observations a validity mask and an SCL layer make gaps (:mod:`pimc_jax.data.user`).

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
