"""A folder of SITS patches: ``.npz`` files and GeoTIFF patches (:mod:`pimc_jax.data.user`).

:func:`load_patch_folder` reads every patch of a folder (``.npz`` files here, GeoTIFF
stacks and folders of dated GeoTIFFs in :mod:`~pimc_jax.data.geotiff_patches`), with the
folder's ``metadata.json`` as defaults, and checks they share their bands.
:func:`patch_sources` lists the same patches unread, each a :class:`PatchSource` that reads
its patch whole or one window at a time (GeoTIFFs read only the window's pixels), so
that a raster larger than memory can be worked through piece by piece.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pimc_jax import progress as progress_lib
from pimc_jax.data import validate
from pimc_jax.data.geotiff_patches import (
    dated_geotiff_files,
    read_dated_geotiffs,
    read_geotiff_stack,
    tiff_files,
)
from pimc_jax.data.patches import Patch
from pimc_jax.data.radar import linear_to_db
from pimc_jax.data.user_fields import (
    DEFAULT_SCL_INVALID_CLASSES,
    LAYOUTS,
    METADATA_KEYS,
    S1_KEYS,
    S1_UNITS,
    TIFF_SUFFIXES,
    as_thwc,
    check_band_names,
    check_labels,
    check_nodata,
    check_scl_classes,
    dates_to_days,
    load_npz_arrays,
    observation_gaps,
)
from pimc_jax.indices import check_radar_band_names

if TYPE_CHECKING:
    from pimc_jax.data.geotiff import Window


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
    unknown = sorted(set(metadata) - set(METADATA_KEYS))
    if unknown:
        raise ValueError(
            f"{meta_file}: unknown keys {unknown}; allowed: {', '.join(METADATA_KEYS)}"
        )
    return dict(metadata)


def _read_patch_file(
    path: Path, defaults: Mapping[str, Any], scl_invalid_classes: Sequence[int]
) -> Patch:
    where = str(path)
    arrays = load_npz_arrays(path)
    for key in ("bands", "dates"):
        if key not in arrays:
            raise ValueError(f"{where}: missing array {key!r} (has {sorted(arrays)})")
    settings = {**defaults, **{k: arrays[k] for k in ("band_names", "layout") if k in arrays}}
    for key in ("scale", "offset", "nodata"):
        if key in arrays:
            settings[key] = arrays[key]
    if "band_names" not in settings:
        raise ValueError(f"{where}: no band_names in the file or in metadata.json")

    layout = str(np.asarray(settings.get("layout", "THWC"))).upper()
    if layout not in LAYOUTS:
        raise ValueError(f"{where}: layout must be one of {LAYOUTS}, got {layout!r}")
    bands = as_thwc(arrays["bands"], "bands", layout, where)
    num_dates, height, width, num_bands = bands.shape
    if num_dates == 0:
        raise ValueError(f"{where}: bands shape {arrays['bands'].shape} has no date")
    try:
        band_names = check_band_names(settings["band_names"], num_bands, where)
    except ValueError as err:
        if len(np.atleast_1d(settings["band_names"])) != num_bands:
            raise ValueError(f"{err} (is layout {layout!r} right?)") from None
        raise

    values = bands.astype(np.float32)
    if settings.get("nodata") is not None:
        nodata = check_nodata(settings["nodata"], "nodata", where)
        values = np.where(bands == nodata, np.float32(np.nan), values)
    values = validate.to_reflectance(values, settings, where)
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
        labels = check_labels(arrays["labels"], (height, width), where)
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
    """The Sentinel-1 fields of a patch file (:mod:`pimc_jax.data.user`), or ``{}`` without them.

    Returns:
      ``s1_bands`` (T1, H, W, C1) float32 dB (NaN = no-data), ``s1_dates`` (T1,) int32,
      ``s1_band_names`` canonical names.
    """
    if "s1_bands" not in arrays and "s1_dates" not in arrays:
        return {}
    if "s1_bands" not in arrays or "s1_dates" not in arrays:
        raise ValueError(f"{where}: give both s1_bands and s1_dates, or neither")
    settings = {key: defaults[key] for key in S1_KEYS if key in defaults}
    settings.update({key: arrays[key] for key in S1_KEYS if key in arrays})
    if "s1_band_names" not in settings:
        raise ValueError(f"{where}: no s1_band_names in the file or in metadata.json")
    raw = as_thwc(arrays["s1_bands"], "s1_bands", layout, where)
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
    if units not in S1_UNITS:
        raise ValueError(f"{where}: s1_units must be one of {S1_UNITS}, got {units!r}")
    values = raw.astype(np.float64)
    gaps = ~np.isfinite(values)
    if settings.get("s1_nodata") is not None:
        gaps |= raw == check_nodata(settings["s1_nodata"], "s1_nodata", where)
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
    """Reads a folder of ``.npz`` and GeoTIFF patches (format: :mod:`pimc_jax.data.user`).

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
    sources = patch_sources(path, scl_invalid_classes=scl_invalid_classes)
    patches = [
        source.read()
        for source in progress_lib.progress(
            sources, desc="Reading patches", unit="patch", enabled=progress
        )
    ]
    ordered = [source.path for source in sources]
    _check_same_bands(patches, ordered)
    for patch, source in zip(patches, ordered, strict=True):
        validate.check_reflectance(patch.bands, patch.band_names, str(source), scaled=None)
    labelled = [patch.labels for patch in patches if patch.labels is not None]
    if labelled:
        validate.check_classes(
            np.unique(np.concatenate([np.unique(x) for x in labelled])), str(Path(path))
        )
    return patches


@dataclasses.dataclass
class PatchSource:
    """One patch of a folder, not yet read: an ``.npz`` file, a GeoTIFF stack or a folder
    of dated GeoTIFFs, with the folder's ``metadata.json`` defaults."""

    path: Path
    defaults: Mapping[str, Any]
    classes: tuple[int, ...]
    _whole: Patch | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def patch_id(self) -> str:
        """The file name without suffix, or the folder name."""
        return self.path.name if self.path.is_dir() else self.path.stem

    @property
    def windowed(self) -> bool:
        """True when :meth:`read` reads only a window's pixels (GeoTIFFs); an ``.npz`` file
        is read whole once and cut."""
        return self.path.is_dir() or self.path.suffix.lower() in TIFF_SUFFIXES

    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the patch; GeoTIFFs from their header only."""
        if not self.windowed:
            patch = self.read()
            return patch.height, patch.width
        from pimc_jax.data import geotiff

        if self.path.is_dir():
            files, _, _ = dated_geotiff_files(self.path)
            first = files[min(files)]
            return geotiff.raster_size(first if isinstance(first, Path) else min(first.values()))
        return geotiff.raster_size(self.path)

    def read(self, window: Window | None = None) -> Patch:
        """The patch, or its ``window`` ``(row, col, rows, cols)`` (clipped at the edge).

        A window's patch has the window's pixels, labels and transform; the values are not
        checked against the folder's other patches (:func:`load_patch_folder` does that).

        Raises:
          ValueError naming the file and the problem.
        """
        if self.path.is_dir():
            patch = read_dated_geotiffs(self.path, self.defaults, self.classes, window)
        elif self.windowed:
            patch = read_geotiff_stack(self.path, self.defaults, self.classes, window)
        else:
            if self._whole is None:
                self._whole = _read_patch_file(self.path, self.defaults, self.classes)
            patch = self._whole if window is None else self._whole.window(window)
        fold = _folder_fold(self.defaults, self.patch_id, self.path)
        if fold is not None and patch.fold == 0:
            patch = dataclasses.replace(patch, fold=fold)
        return patch


def _folder_fold(defaults: Mapping[str, Any], patch_id: str, where: Path) -> int | None:
    """The fold ``metadata.json``'s ``folds`` (``{patch id: fold}``) gives the patch."""
    folds = defaults.get("folds")
    if folds is None:
        return None
    if not isinstance(folds, Mapping):
        raise ValueError(
            f"{where.parent / 'metadata.json'}: folds must map patch ids to folds, e.g. "
            '{"field_a": 1, "field_b": 2}'
        )
    fold = folds.get(patch_id)
    if fold is None:
        return None
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 1:
        raise ValueError(
            f"{where.parent / 'metadata.json'}: the fold of {patch_id!r} must be an int >= 1, "
            f"got {fold!r}"
        )
    return fold


def read_class_table(folder: str | os.PathLike[str]) -> dict[int, str]:
    """A patch folder's ``classes.json`` (``{"code": "name"}``) as ``{code: name}``; empty
    without one.

    Raises:
      ValueError: the file is not such an object.
    """
    file = Path(folder) / "classes.json"
    if not file.is_file():
        return {}
    try:
        return {int(code): str(name) for code, name in json.loads(file.read_text()).items()}
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f'{file}: must map class codes to names, e.g. {{"1": "wheat"}}') from None


def patch_sources(
    path: str | os.PathLike[str],
    *,
    scl_invalid_classes: Sequence[int] = DEFAULT_SCL_INVALID_CLASSES,
) -> list[PatchSource]:
    """The patches of a folder (as :func:`load_patch_folder` finds them), unread.

    Raises:
      ValueError: the folder is missing, holds no patch, or two patches share an id.
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
            if not tiff_files(source):
                continue
        elif source.suffix.lower() in TIFF_SUFFIXES:
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
    # Sorted by file or folder name.
    return [PatchSource(source, defaults, tuple(classes)) for source in sources.values()]


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
