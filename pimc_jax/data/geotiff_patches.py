"""GeoTIFF patches: one multi-band stack per patch, or a folder of dated GeoTIFFs.

Formats in :mod:`pimc_jax.data.user` ("GeoTIFF patches"); rasterio is imported only
when a folder holds GeoTIFFs (:mod:`pimc_jax.data.geotiff`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pimc_jax.data import validate
from pimc_jax.data.patches import Patch
from pimc_jax.data.user_fields import (
    SCL_NAME,
    TIFF_SUFFIXES,
    check_band_names,
    check_labels,
    check_nodata,
    dates_to_days,
    observation_gaps,
)

if TYPE_CHECKING:  # GeoTIFF reading imports rasterio only when a folder holds GeoTIFFs
    from pimc_jax.data.geotiff import Raster, Window


_DATE_TEXT = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
_SCL_STEM = re.compile(r"^(.+)_scl$", re.IGNORECASE)
# One band per file: <date>_<band>, <band>_<date>, or a Sentinel-2 product's band file
# (T31UFS_20190401T105031_B04_10m); the band is a Sentinel-2 band name or SCL.
_BAND = r"(?P<band>B\d{1,2}A?|SCL)"
_BAND_FILE_STEMS = (
    re.compile(rf"^(?P<date>[\d-]{{8,10}})_{_BAND}$", re.IGNORECASE),
    re.compile(rf"^{_BAND}_(?P<date>[\d-]{{8,10}})$", re.IGNORECASE),
    re.compile(rf"^.*_(?P<date>\d{{8}})T\d{{6}}_{_BAND}(_\d{{2}}m)?$", re.IGNORECASE),
)


def tiff_files(folder: Path) -> list[Path]:
    """The GeoTIFF files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES)


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


def _single_band(
    path: Path, reference: Raster, reference_where: str, window: Window | None = None
) -> np.ma.MaskedArray:
    """The one band of ``path`` (on ``reference``'s grid), with no-data as a mask array."""
    from pimc_jax.data import geotiff

    raster = geotiff.read_raster(path, window)
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
    if upper.count(SCL_NAME) > 1:
        raise ValueError(f"{where}: more than one band named SCL")
    num_dates, _, height, width = raw.shape
    scl_band = upper.index(SCL_NAME) if SCL_NAME in upper else None
    keep = [index for index in range(len(names)) if index != scl_band]
    if not keep:
        raise ValueError(f"{where}: no band besides SCL")
    band_names = check_band_names(np.array([names[i] for i in keep]), len(keep), where)

    values = raw[:, keep].astype(np.float32)
    gaps = raw_gaps[:, keep]
    nodata = defaults.get("nodata")
    if nodata is not None:
        gaps = gaps | (raw[:, keep] == check_nodata(nodata, "nodata", where))
    values[gaps] = np.nan
    values = validate.to_reflectance(values, defaults, where)

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


def _band_order(name: str) -> tuple[int, str]:
    """Sentinel-2 band order (B1 … B8, B8A, B9 … B12) of a band name like ``B04``."""
    match = re.match(r"^B0*(\d+)(A?)$", name.upper())
    return (int(match.group(1)), match.group(2)) if match else (99, name)


def _day_text(day: float) -> str:
    return str(np.datetime64("1970-01-01") + int(day))


def _read_labels(
    path: Path, reference: Raster, reference_where: str, window: Window | None = None
) -> np.ndarray:
    layer = _single_band(path, reference, reference_where, window)
    if np.any(np.ma.getmaskarray(layer)):
        raise ValueError(f"{path}: labels hold no-data pixels; give every pixel a class")
    return check_labels(_integer_layer(layer, "labels", str(path)), reference.shape, str(path))


def _band_file(stem: str) -> tuple[float, str] | None:
    """``(day, band)`` of a one-band file's name (module constants), or None."""
    for pattern in _BAND_FILE_STEMS:
        match = pattern.match(stem)
        if match:
            day = _parse_date(match.group("date"))
            if day is not None:
                return day, match.group("band").upper()
    return None


def dated_geotiff_files(
    folder: Path,
) -> tuple[dict[float, Path | dict[str, Path]], dict[float, Path], Path | None]:
    """``(band files, SCL files, labels file)`` of a folder of dated GeoTIFFs, the first two
    by day (days since 1970-01-01). A date's bands are one file, or one file per band
    (``{band: file}``, named ``<date>_<band>``, ``<band>_<date>`` or as in a Sentinel-2
    product, ``T31UFS_20190401T105031_B04_10m``)."""
    data: dict[float, Path | dict[str, Path]] = {}
    scl_files: dict[float, Path] = {}
    labels_file = None
    for file in tiff_files(folder):
        stem = file.stem
        scl_match = _SCL_STEM.match(stem)
        day = _parse_date(scl_match.group(1) if scl_match else stem)
        per_band = _band_file(stem) if day is None else None
        if per_band is not None and per_band[1] == SCL_NAME:
            day, scl_match, per_band = per_band[0], True, None
        if stem.lower() == "labels":
            labels_file = file
        elif per_band is not None:
            band_day, band = per_band
            bands = data.setdefault(band_day, {})
            if not isinstance(bands, dict) or band in bands:
                raise ValueError(f"{file}: date and band {band} appear twice in {folder}")
            bands[band] = file
        elif day is None:
            raise ValueError(
                f"{file}: GeoTIFFs of a patch folder are named <YYYY-MM-DD>.tif, "
                "<YYYY-MM-DD>_SCL.tif, <YYYY-MM-DD>_<band>.tif, <band>_<YYYY-MM-DD>.tif, "
                "Sentinel-2 band files (T31UFS_20190401T105031_B04_10m.tif) or labels.tif"
            )
        else:
            target = scl_files if scl_match else data
            if day in target:
                raise ValueError(f"{file}: date {stem} appears twice in {folder}")
            target[day] = file
    if not data:
        raise ValueError(f"{folder}: no <YYYY-MM-DD>.tif band file")
    kinds = {isinstance(entry, dict) for entry in data.values()}
    if len(kinds) > 1:
        raise ValueError(f"{folder}: mixes one file per date and one file per band; use one layout")
    orphans = sorted(scl_files.keys() - data.keys())
    if orphans:
        raise ValueError(f"{scl_files[orphans[0]]}: SCL file without a band file of that date")
    return data, scl_files, labels_file


def read_dated_geotiffs(
    folder: Path,
    defaults: Mapping[str, Any],
    classes: Sequence[int],
    window: Window | None = None,
) -> Patch:
    """A patch from ``folder/<YYYY-MM-DD>.tif`` files (format: :mod:`pimc_jax.data.user`);
    only ``window`` ``(row, col, rows, cols)`` of each file when given."""
    from pimc_jax.data import geotiff

    data, scl_files, labels_file = dated_geotiff_files(folder)
    days = sorted(data)

    def read_date(day: float) -> tuple[Raster, str]:
        """The date's raster (one-band files stacked in band order) and its name."""
        entry = data[day]
        if not isinstance(entry, dict):
            return geotiff.read_raster(entry, window), str(entry)
        order = sorted(entry, key=_band_order)
        expected = sorted(data[days[0]], key=_band_order)
        if order != expected:
            raise ValueError(
                f"{folder}: date {_day_text(day)} has bands {order}, the first date {expected}"
            )
        parts = [geotiff.read_raster(entry[band], window) for band in order]
        for band, part in zip(order, parts, strict=True):
            if part.values.shape[0] != 1:
                raise ValueError(f"{entry[band]}: expected one band, got {part.values.shape[0]}")
            _same_grid(part, parts[0], str(entry[band]), str(entry[order[0]]))
        stacked = geotiff.Raster(
            np.concatenate([part.values for part in parts]),
            tuple(order),
            tuple(part.nodata[0] for part in parts),
            parts[0].crs,
            parts[0].transform,
        )
        return stacked, str(entry[order[0]])

    first, first_where = read_date(days[0])
    names = _raster_band_names(first.descriptions, defaults, first.values.shape[0], first_where)
    raws, raw_gaps = [], []
    for day in days:
        raster, where = (first, first_where) if day == days[0] else read_date(day)
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
        _single_band(scl_files[day], first, first_where, window) if day in scl_files else None
        for day in days
    ]
    labels = None if labels_file is None else _read_labels(labels_file, first, first_where, window)
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


def read_geotiff_stack(
    file: Path,
    defaults: Mapping[str, Any],
    classes: Sequence[int],
    window: Window | None = None,
) -> Patch:
    """A patch from one ``<name>.tif`` of T·C bands (format: :mod:`pimc_jax.data.user`);
    only ``window`` ``(row, col, rows, cols)`` when given."""
    from pimc_jax.data import geotiff

    where = str(file)
    raster = geotiff.read_raster(file, window)
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
    labels_file = _sidecar(file, "labels", TIFF_SUFFIXES)
    labels = None if labels_file is None else _read_labels(labels_file, raster, where, window)
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
