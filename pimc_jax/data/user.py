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

``metadata.json`` may give ``band_names``, ``layout``, ``scale`` and ``nodata``
(keys in a file win over it), e.g.::

    {"band_names": ["B2", "B3", "B4", "B8"], "layout": "TCHW", "scale": 0.0001, "nodata": 0}

All patches of a folder must have the same band names; their sizes and numbers of dates
may differ.

Problems are reported as ``ValueError`` naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pimc_jax.data.patches import Patch, series_dates
from pimc_jax.indices import BAND_TABLES, INDEX_NAMES, canonical_band_name, resolve_band_names

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
    scale = np.asarray(value)
    if scale.shape != () or scale.dtype.kind not in "iuf" or not np.isfinite(scale):
        raise ValueError(f"{where}: scale must be a finite number, got {value!r}")
    return float(scale)


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


def load_pixel_npz(path: str | os.PathLike[str]) -> PixelSeries:
    """Reads pixel time series from the ``.npz`` format in the module docstring.

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
    unknown = sorted(set(metadata) - {"band_names", "layout", "scale", "nodata"})
    if unknown:
        raise ValueError(
            f"{meta_file}: unknown keys {unknown}; allowed: band_names, layout, scale, nodata"
        )
    return dict(metadata)


def _read_patch_file(path: Path, defaults: Mapping[str, Any]) -> Patch:
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
    bands = _numeric(arrays["bands"], "bands", where)
    if bands.ndim != 4:
        raise ValueError(f"{where}: bands must be 4-D ({layout}), got shape {bands.shape}")
    if layout == "TCHW":
        bands = np.transpose(bands, (0, 2, 3, 1))
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
        nodata = np.asarray(settings["nodata"])
        if nodata.shape != () or nodata.dtype.kind not in "iuf":
            raise ValueError(f"{where}: nodata must be a number, got {settings['nodata']!r}")
        values = np.where(bands == nodata, np.float32(np.nan), values)
    if "scale" in settings:
        values = values * np.float32(_scale(settings["scale"], where))

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
    return Patch(
        bands=values,
        dates=dates.astype(np.int32),
        band_names=band_names,
        labels=labels,
        patch_id=path.stem,
        fold=fold,
    )


def load_patch_folder(path: str | os.PathLike[str]) -> list[Patch]:
    """Reads a folder of ``<name>.npz`` patches (format in the module docstring).

    Returns:
      One :class:`Patch` per file, in sorted file-name order: bands (T, H, W, C) float32
      reflectance (NaN = no-data), dates (T,) int32 days, labels (H, W) int32 or None,
      patch_id = file name without ``.npz``.

    Raises:
      ValueError naming the file and the problem.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"patch folder not found: {folder}")
    defaults = _read_folder_metadata(folder)
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise ValueError(f"{folder}: no .npz patch files")
    patches = [_read_patch_file(file, defaults) for file in files]
    _check_same_bands(patches, files)
    return patches


def _check_same_bands(patches: Sequence[Patch], files: Sequence[Path]) -> None:
    first = patches[0].band_names
    for patch, file in zip(patches, files, strict=True):
        if patch.band_names != first:
            raise ValueError(
                f"{file}: band_names {patch.band_names} differ from {first} in {files[0].name}"
            )
