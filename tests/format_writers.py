"""Writers of tiny datasets in the exact on-disk formats the loaders read.

Each writer returns what it wrote (the arrays, dates and names), which the tests use as
the independent reference for what a loader must give back.
"""

from __future__ import annotations

import datetime
import io
import json
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
import tifffile
from PIL import Image

PASTIS_NUM_BANDS = 10
# The archives' folder names, taken from TensorFlow Datasets' EuroSAT builder (its label
# names are the folder names) rather than from pimc_jax.data.classes: the loader's class
# table is checked against this independent list. Reading the builder's info downloads
# nothing.
EUROSAT_CLASSES = tuple(
    tfds.builder("eurosat/rgb", data_dir=tempfile.gettempdir()).info.features["label"].names
)
EUROSAT_RGB_SUBDIR = "2750"
EUROSAT_ALL_SUBDIR = "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"
_EPOCH = datetime.date(1970, 1, 1)


def _acquisition_dates(rng: np.random.Generator, num_dates: int) -> list[datetime.date]:
    first = datetime.date(2018, 9, 1) + datetime.timedelta(days=int(rng.integers(0, 30)))
    gaps = np.cumsum(rng.integers(3, 25, size=num_dates - 1))
    return [first] + [first + datetime.timedelta(days=int(gap)) for gap in gaps]


PASTIS_S1_ORBITS = ("S1A", "S1D")


def _write_pastis_s1(
    root: Path, patch_id: int, index: int, rng: np.random.Generator, size: int, start: datetime.date
) -> dict[str, Any]:
    """PASTIS-R S1A/S1D files of one patch: (T, 3, H, W) float32 VV, VH (dB), VV − VH.

    S1A has ``4 + index`` dates six days apart from ``start``; S1D has 3 dates, its second
    on S1A's second day (a day both orbits share). One VV value of S1A date 1 is NaN.
    """
    written: dict[str, Any] = {}
    s1a_dates = [start + datetime.timedelta(days=6 * k) for k in range(4 + index)]
    s1d_dates = [s1a_dates[0] + datetime.timedelta(days=2), s1a_dates[1]]
    s1d_dates.append(s1a_dates[1] + datetime.timedelta(days=9))
    for orbit, dates in zip(PASTIS_S1_ORBITS, (s1a_dates, s1d_dates), strict=True):
        vv = rng.uniform(-20.0, -5.0, size=(len(dates), size, size))
        vh = rng.uniform(-28.0, -12.0, size=(len(dates), size, size))
        data = np.stack([vv, vh, vv - vh], axis=1).astype(np.float32)
        if orbit == "S1A":
            data[1, 0, 1, 2] = np.nan
        (root / f"DATA_{orbit}").mkdir(exist_ok=True)
        np.save(root / f"DATA_{orbit}" / f"{orbit}_{patch_id}.npy", data)
        key = orbit.lower()
        written[key] = data
        written[f"{key}_yyyymmdd"] = [int(date.strftime("%Y%m%d")) for date in dates]
        written[f"{key}_days"] = np.array([(date - _EPOCH).days for date in dates])
    return written


def write_pastis_dir(
    path: str | Path,
    num_patches: int = 3,
    size: int = 32,
    *,
    s1: bool = False,
    without_s1: Sequence[int] = (),
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Writes a PASTIS directory (PASTIS-R with ``s1``) in the official layout.

    Patch ``i`` gets ID_PATCH ``10000 + 7 * i``, fold ``i % 5 + 1`` and ``5 + i % 5``
    dates (5..9). With ``s1``, every patch whose index is not in ``without_s1`` also gets
    ``DATA_S1A``/``DATA_S1D`` files, ``dates-S1A``/``dates-S1D`` properties (see
    :func:`_write_pastis_s1`) and the directory ``NORM_S1A_patch.json`` /
    ``NORM_S1D_patch.json``; the patches of ``without_s1`` get neither files nor dates.

    Returns:
      ``{patch_id: {"fold", "dn" (T, 10, H, W) int16, "target" (3, H, W) uint8,
      "yyyymmdd" list[int], "days" (T,) int days since 1970-01-01}}``, plus for a patch
      with S1, per orbit ``"s1a"`` (T1, 3, H, W) float32 as written, ``"s1a_yyyymmdd"``,
      ``"s1a_days"`` (and the same for ``s1d``).
    """
    root = Path(path)
    for folder in ("DATA_S2", "ANNOTATIONS"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written, features = {}, []
    for index in range(num_patches):
        patch_id = 10000 + 7 * index
        fold = index % 5 + 1
        dates = _acquisition_dates(rng, 5 + index % 5)
        dn = rng.integers(0, 10_000, size=(len(dates), PASTIS_NUM_BANDS, size, size))
        dn = dn.astype(np.int16)
        target = np.stack(
            [
                rng.integers(0, 20, size=(size, size)),  # semantic class
                rng.integers(0, 50, size=(size, size)),  # parcel (instance) ids
                rng.integers(0, 50, size=(size, size)),
            ]
        ).astype(np.uint8)
        np.save(root / "DATA_S2" / f"S2_{patch_id}.npy", dn)
        np.save(root / "ANNOTATIONS" / f"TARGET_{patch_id}.npy", target)
        yyyymmdd = [int(date.strftime("%Y%m%d")) for date in dates]
        x0, y0 = 600_000.0 + 1_280.0 * index, 6_800_000.0
        properties: dict[str, Any] = {
            "Fold": fold,
            "ID_PATCH": patch_id,
            "N_Parcel": int(rng.integers(1, 100)),
            "Parcel_Cover": float(rng.uniform(0.3, 1.0)),
            "TILE": "t30uxv",
            "dates-S2": {str(t): value for t, value in enumerate(yyyymmdd)},
            "id": str(patch_id),
        }
        s1_written: dict[str, Any] = {}
        if s1 and index not in without_s1:
            s1_written = _write_pastis_s1(root, patch_id, index, rng, size, dates[0])
            for orbit in PASTIS_S1_ORBITS:
                values = s1_written[f"{orbit.lower()}_yyyymmdd"]
                properties[f"dates-{orbit}"] = {str(t): value for t, value in enumerate(values)}
        features.append(
            {
                "type": "Feature",
                "id": str(patch_id),
                "properties": properties,
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [[x0, y0], [x0 + 1280, y0], [x0 + 1280, y0 + 1280], [x0, y0 + 1280]]
                        + [[x0, y0]]
                    ],
                },
            }
        )
        written[str(patch_id)] = {
            "fold": fold,
            "dn": dn,
            "target": target,
            "yyyymmdd": yyyymmdd,
            "days": np.array([(date - _EPOCH).days for date in dates]),
            **s1_written,
        }
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::2154"}},
        "features": features,
    }
    (root / "metadata.geojson").write_text(json.dumps(collection))
    norm = {
        f"Fold_{fold}": {
            "mean": rng.uniform(300, 3000, PASTIS_NUM_BANDS).tolist(),
            "std": rng.uniform(100, 1500, PASTIS_NUM_BANDS).tolist(),
        }
        for fold in range(1, 6)
    }
    (root / "NORM_S2_patch.json").write_text(json.dumps(norm))
    if s1:
        for orbit in PASTIS_S1_ORBITS:
            s1_norm = {
                f"Fold_{fold}": {
                    "mean": rng.uniform(-18.0, 6.0, 3).tolist(),
                    "std": rng.uniform(2.0, 4.0, 3).tolist(),
                }
                for fold in range(1, 6)
            }
            (root / f"NORM_{orbit}_patch.json").write_text(json.dumps(s1_norm))
    return written


def _class_colour(class_index: int) -> np.ndarray:
    # Distinct, well separated colours so that labels can be checked from pixels.
    return np.array([25 * class_index + 10, 240 - 20 * class_index, 60 + 15 * class_index])


def write_eurosat_archives(
    path: str | Path,
    per_class: int = 3,
    *,
    rgb: bool = True,
    all_bands: bool = True,
    split_lists: bool = False,
    planar_tiff: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Writes ``EuroSAT.zip`` and/or ``EuroSATallBands.zip`` in the official layout.

    Images are ``<Class>_<n>`` for n = 1..per_class. RGB images are a class colour plus
    noise, saved as JPEG; all-band images are random uint16 digital numbers saved as
    13-band (64, 64, 13) TIFFs. With ``split_lists``, ``train.txt``, ``val.txt`` and
    ``test.txt`` list the images with n % 3 == 1, 2 and 0 respectively (``.jpg`` names).
    With ``planar_tiff`` the TIFFs store the bands as separate planes (13, 64, 64).

    Returns:
      ``{"rgb": {filename: (64, 64, 3) uint8 before JPEG}, "all": {filename:
      (64, 64, 13) uint16}, "splits": {"train"|"validation"|"test": [stems]}}``.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written: dict[str, Any] = {"rgb": {}, "all": {}, "splits": {}}
    rgb_zip = zipfile.ZipFile(root / "EuroSAT.zip", "w") if rgb else None
    all_zip = zipfile.ZipFile(root / "EuroSATallBands.zip", "w") if all_bands else None
    if rgb_zip is not None:
        rgb_zip.writestr(f"{EUROSAT_RGB_SUBDIR}/", b"")
    if all_zip is not None:
        all_zip.writestr(f"{EUROSAT_ALL_SUBDIR}/", b"")
    for class_index, class_name in enumerate(EUROSAT_CLASSES):
        for number in range(1, per_class + 1):
            stem = f"{class_name}_{number}"
            if rgb_zip is not None:
                noise = rng.integers(-8, 9, size=(64, 64, 3))
                image = np.clip(_class_colour(class_index) + noise, 0, 255).astype(np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, format="JPEG", quality=95)
                rgb_zip.writestr(f"{EUROSAT_RGB_SUBDIR}/{class_name}/{stem}.jpg", buffer.getvalue())
                written["rgb"][f"{stem}.jpg"] = image
            if all_zip is not None:
                bands = rng.integers(0, 10_000, size=(64, 64, 13)).astype(np.uint16)
                buffer = io.BytesIO()
                if planar_tiff:
                    planes = np.ascontiguousarray(np.transpose(bands, (2, 0, 1)))
                    tifffile.imwrite(
                        buffer, planes, photometric="minisblack", planarconfig="separate"
                    )
                else:
                    tifffile.imwrite(buffer, bands, photometric="minisblack", planarconfig="contig")
                all_zip.writestr(f"{EUROSAT_ALL_SUBDIR}/{class_name}/{stem}.tif", buffer.getvalue())
                written["all"][f"{stem}.tif"] = bands
            split = ("test", "train", "validation")[number % 3]
            written["splits"].setdefault(split, []).append(stem)
    for archive in (rgb_zip, all_zip):
        if archive is not None:
            archive.close()
    if split_lists:
        list_files = {"train": "train.txt", "validation": "val.txt", "test": "test.txt"}
        for split, file_name in list_files.items():
            lines = [f"{stem}.jpg" for stem in written["splits"].get(split, [])]
            (root / file_name).write_text("\n".join(lines) + "\n")
    else:
        written["splits"] = {}
    return written


def write_user_npz(
    path: str | Path,
    num_pixels: int = 6,
    num_dates: int = 5,
    band_names: Sequence[str] = ("B2", "B3", "B4", "B8"),
    *,
    iso_dates: bool = False,
    per_pixel_dates: bool = False,
    lengths: Sequence[int] | None = None,
    num_classes: int | None = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Writes a pixel time series ``.npz`` file in the documented user format.

    Args:
      iso_dates: write dates as ISO strings instead of integer days since 1970-01-01.
      per_pixel_dates: write (N, T) dates (each pixel shifted by its index) instead of (T,).
      lengths: optional number of real dates per pixel; writes a ``mask`` and fills the
        padded date entries with 0 / "" and the padded bands with -1.
      num_classes: write ``labels`` in 0..num_classes-1 and ``class_names``; None for none.

    Returns:
      What was written plus ``days`` (N, T) int days since 1970-01-01 of each entry.
    """
    rng = np.random.default_rng(seed)
    bands = rng.uniform(0.0, 0.6, size=(num_pixels, num_dates, len(band_names)))
    bands = bands.astype(np.float32)
    bands[0, 1, 0] = np.nan  # a no-data value must survive
    base = np.array([(d - _EPOCH).days for d in _acquisition_dates(rng, num_dates)], dtype=np.int64)
    days = base[None, :] + (np.arange(num_pixels)[:, None] if per_pixel_dates else 0)
    days = np.broadcast_to(days, (num_pixels, num_dates)).copy()
    arrays: dict[str, Any] = {"bands": bands, "band_names": np.array(band_names)}
    if iso_dates:
        dates = np.datetime_as_string(days.astype("datetime64[D]"), unit="D")
    else:
        dates = days
    if lengths is not None:
        mask = np.arange(num_dates)[None, :] < np.asarray(lengths)[:, None]
        arrays["mask"] = mask
        dates = np.where(mask, dates, "" if iso_dates else 0)
        arrays["bands"] = np.where(mask[:, :, None], bands, np.float32(-1.0))
    arrays["dates"] = dates if per_pixel_dates or lengths is not None else dates[0]
    if num_classes is not None:
        arrays["labels"] = rng.integers(0, num_classes, size=num_pixels)
        arrays["class_names"] = np.array([f"class_{k}" for k in range(num_classes)])
    np.savez(path, **arrays)
    return {**arrays, "days": days, "bands_reflectance": bands}


def write_user_patch_folder(
    path: str | Path,
    num_patches: int = 2,
    size: int = 8,
    band_names: Sequence[str] = ("B2", "B3", "B4", "B8"),
    *,
    layout: str = "THWC",
    metadata_json: bool = True,
    digital_numbers: bool = False,
    iso_dates: bool = False,
    with_labels: bool = True,
    s1_units: str | None = None,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Writes a folder of ``<name>.npz`` patches in the documented user format.

    Patch ``i`` is ``patch_<i>.npz`` with ``4 + i`` dates. With ``metadata_json`` the band
    names, layout (and scale / nodata) go to ``metadata.json``, else into each file.
    With ``digital_numbers``, bands are int16 reflectance x 10 000 with ``scale`` 0.0001
    and ``nodata`` -9999 at one pixel.

    With ``s1_units`` (``"db"`` or ``"linear"``) every patch but the last also holds a
    Sentinel-1 series: ``s1_bands`` (``3 + i`` dates, channels VH, VV in that order, in
    ``layout``) in those units, ``s1_dates`` 5 days apart (ISO strings with
    ``iso_dates``), ``s1_band_names`` / ``s1_units`` beside the other settings, and
    ``s1_nodata`` -999 at pixel (1, 1) of date 0.

    Returns:
      ``{name: {"reflectance" (T, H, W, C) float32 expected (NaN at no-data),
      "days" (T,) int, "labels" (H, W) | None}}``, plus for a patch with S1 ``"s1_db"``
      (T1, H, W, 2) float64 expected dB (NaN at no-data) and ``"s1_days"`` (T1,) int.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    settings: dict[str, Any] = {"band_names": list(band_names), "layout": layout}
    if digital_numbers:
        settings.update(scale=0.0001, nodata=-9999)
    if s1_units is not None:
        settings.update(s1_band_names=["vh", "VV"], s1_units=s1_units, s1_nodata=-999)
    if metadata_json:
        (root / "metadata.json").write_text(json.dumps(settings))
    written = {}
    for index in range(num_patches):
        name = f"patch_{index}"
        num_dates = 4 + index
        reflectance = rng.uniform(0.0, 0.6, size=(num_dates, size, size, len(band_names)))
        reflectance = reflectance.astype(np.float32)
        if digital_numbers:
            stored = np.round(reflectance * 10_000).astype(np.int16)
            reflectance = stored.astype(np.float32) * np.float32(0.0001)
            stored[1, 2, 3, :] = -9999
            reflectance[1, 2, 3, :] = np.nan
        else:
            stored = reflectance
        if layout == "TCHW":
            stored = np.transpose(stored, (0, 3, 1, 2))
        days = np.array([(d - _EPOCH).days for d in _acquisition_dates(rng, num_dates)])
        arrays: dict[str, Any] = {"bands": stored}
        arrays["dates"] = (
            np.datetime_as_string(days.astype("datetime64[D]"), unit="D") if iso_dates else days
        )
        labels = rng.integers(0, 5, size=(size, size)).astype(np.int64) if with_labels else None
        if labels is not None:
            arrays["labels"] = labels
        if not metadata_json:
            arrays.update({key: np.asarray(value) for key, value in settings.items()})
        written[name] = {"reflectance": reflectance, "days": days, "labels": labels}
        if s1_units is not None and index < num_patches - 1:
            s1_db = np.stack(
                [
                    rng.uniform(-28.0, -12.0, size=(3 + index, size, size)),  # VH
                    rng.uniform(-20.0, -5.0, size=(3 + index, size, size)),  # VV
                ],
                axis=-1,
            )
            stored = s1_db if s1_units == "db" else 10.0 ** (s1_db / 10.0)
            stored = stored.astype(np.float32)
            stored[0, 1, 1, :] = -999
            s1_db[0, 1, 1, :] = np.nan
            if layout == "TCHW":
                stored = np.transpose(stored, (0, 3, 1, 2))
            s1_days = days[0] + 2 + 5 * np.arange(3 + index)
            arrays["s1_bands"] = stored
            arrays["s1_dates"] = (
                np.datetime_as_string(s1_days.astype("datetime64[D]"), unit="D")
                if iso_dates
                else s1_days
            )
            written[name].update(s1_db=s1_db, s1_days=s1_days)
        np.savez(root / f"{name}.npz", **arrays)
    return written


UTM31N = "EPSG:32631"


def _write_int16_tif(
    path: Path, data: np.ndarray, profile: dict, descriptions: list[str] | None
) -> None:
    """``data`` (bands, H, W) as an int16 GeoTIFF with nodata -9999 and, given, band
    descriptions."""
    import rasterio

    with rasterio.open(
        path, "w", count=data.shape[0], dtype="int16", nodata=-9999, **profile
    ) as dst:
        dst.write(data)
        for band, description in enumerate(descriptions or (), start=1):
            dst.set_band_description(band, description)


def write_geotiff_patch_folder(
    path: str | Path,
    num_patches: int = 2,
    height: int = 16,
    width: int = 12,
    band_names: Sequence[str] = ("B2", "B3", "B4", "B8"),
    *,
    layout: str = "dates",
    scl: str | None = "band",
    descriptions: bool = True,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Writes a folder of GeoTIFF patches (rasterio) in a documented user layout.

    Patch ``i`` (``geo_<i>``) has ``5 + i`` dates, int16 digital numbers (reflectance ×
    10 000; ``scale`` 0.0001 in ``metadata.json``) with the files' nodata -9999 at pixel
    (1, 2) of date 0 in every band and at pixel (3, 4) of date 1 in the last band only,
    CRS EPSG:32631 and a 10 m north-up transform whose origin moves east with ``i``.

    Args:
      layout: ``"dates"``: ``geo_<i>/<YYYY-MM-DD>.tif`` per date; ``"stack"``: one
        ``geo_<i>.tif`` of T·C bands, date-major.
      scl: ``"band"``: an SCL band after the C bands of each date; ``"file"`` (layout
        ``dates`` only): ``<YYYY-MM-DD>_SCL.tif`` beside each date; None: no SCL.
      descriptions: describe the bands (``B4`` / ``SCL``; ``2019-04-01_B4`` in a stack);
        else band names go to ``metadata.json`` (and a stack gets ``geo_<i>.dates.txt``).

    Returns:
      ``{name: {"dn" (T, H, W, C) int16 as stored, "scl" (T, H, W) uint8 or None,
      "days" (T,) int, "iso" list[str], "crs" str, "transform" (a, b, c, d, e, f)}}``.
    """
    import rasterio
    from affine import Affine

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    metadata: dict[str, Any] = {"scale": 0.0001}
    names = list(band_names) + (["SCL"] if scl == "band" else [])
    if not descriptions:
        metadata["band_names"] = names
    (root / "metadata.json").write_text(json.dumps(metadata))
    written = {}
    for index in range(num_patches):
        name = f"geo_{index}"
        num_dates = 5 + index
        dates = _acquisition_dates(rng, num_dates)
        iso = [date.isoformat() for date in dates]
        dn = rng.integers(100, 6000, size=(num_dates, height, width, len(band_names)))
        dn = dn.astype(np.int16)
        dn[0, 1, 2, :] = -9999
        dn[1, 3, 4, -1] = -9999
        # Mostly vegetation (4), every class present somewhere.
        classes = rng.choice(12, size=(num_dates, height, width), p=[0.02] * 11 + [0.78])
        classes = np.where(classes == 11, 4, classes)
        classes.flat[: 12 * 3 : 3] = np.arange(12)
        scl_values = classes.astype(np.uint8) if scl is not None else None
        transform = Affine(10.0, 0.0, 600_000.0 + 10.0 * width * index, 0.0, -10.0, 5_700_000.0)
        profile = dict(driver="GTiff", height=height, width=width, crs=UTM31N, transform=transform)
        # (bands [+ SCL], H, W) of each date, as stored.
        planes = [np.transpose(dn[date], (2, 0, 1)) for date in range(num_dates)]
        if scl == "band":
            planes = [
                np.concatenate([plane, scl_values[date][None].astype(np.int16)])
                for date, plane in enumerate(planes)
            ]
        if layout == "dates":
            (root / name).mkdir()
            for date in range(num_dates):
                _write_int16_tif(
                    root / name / f"{iso[date]}.tif",
                    planes[date],
                    profile,
                    names if descriptions else None,
                )
                if scl == "file":
                    with rasterio.open(
                        root / name / f"{iso[date]}_SCL.tif", "w", count=1, dtype="uint8", **profile
                    ) as dst:
                        dst.write(scl_values[date][None])
        elif layout == "stack":
            _write_int16_tif(
                root / f"{name}.tif",
                np.concatenate(planes),
                profile,
                [f"{day}_{band_name}" for day in iso for band_name in names]
                if descriptions
                else None,
            )
            if not descriptions:
                (root / f"{name}.dates.txt").write_text("date\n" + "\n".join(iso) + "\n")
        else:
            raise ValueError(f"unknown layout {layout!r}")
        written[name] = {
            "dn": dn,
            "scl": scl_values,
            "days": np.array([(date - _EPOCH).days for date in dates]),
            "iso": iso,
            "crs": UTM31N,
            "transform": tuple(transform)[:6],
        }
    return written


SEN1FLOODS11_S2_BANDS = (
    "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12",
)  # fmt: skip


def write_sen1floods11_dir(
    path: str | Path,
    splits: dict[str, Sequence[str]] | None = None,
    size: int = 16,
    *,
    empty_label: str | None = "Spain_900",
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Writes Sen1Floods11's hand-labelled layout (rasterio) under ``path/v1.1``.

    ``HandLabeled/S1Hand/<chip>_S1Hand.tif`` (2 bands VV, VH float32 dB, NaN at pixel
    (0, 1) of VH), ``S2Hand/<chip>_S2Hand.tif`` (13 uint16 bands B1..B12 with B8A and B10,
    L1C TOA × 10 000; band ``k`` holds ``1000 + 100 k`` plus noise, so the band order can be
    checked; DN 0 at pixel (1, 0) of every band), ``LabelHand/<chip>_LabelHand.tif`` (int16
    −1/0/1: the left half's top rows −1, water where VV < −15 dB) in EPSG:4326 at 0.0001°,
    and ``splits/flood_handlabeled/flood_<split>_data.csv`` rows ``S1 file,label file``
    (no header). ``empty_label`` names a chip (added to the train split) whose label is −1
    everywhere.

    Returns:
      ``{chip id: {"vv", "vh" (H, W) float32 dB, "dn" (13, H, W) uint16, "labels" (H, W)
      int16, "split" str, "crs" str, "transform" (a, b, c, d, e, f)}}``.
    """
    import rasterio
    from affine import Affine

    splits = splits or {
        "train": ("Ghana_101", "Ghana_102", "India_201"),
        "valid": ("USA_301",),
        "test": ("Ghana_103", "Paraguay_401"),
    }
    splits = {name: list(chips) for name, chips in splits.items()}
    if empty_label:
        splits.setdefault("train", []).append(empty_label)
    root = Path(path) / "v1.1"
    hand = root / "data" / "flood_events" / "HandLabeled"
    for folder in ("S1Hand", "S2Hand", "LabelHand"):
        (hand / folder).mkdir(parents=True, exist_ok=True)
    (root / "splits" / "flood_handlabeled").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, Any]] = {}
    for index, (split, chips) in enumerate(sorted(splits.items())):
        rows = []
        for number, chip in enumerate(chips):
            transform = Affine(0.0001, 0, -1.0 + 0.01 * (index * 10 + number), 0, -0.0001, 7.0)
            profile = dict(
                driver="GTiff", width=size, height=size, crs="EPSG:4326", transform=transform
            )
            yy, xx = np.mgrid[:size, :size]
            water = (xx + yy) < size * (0.6 + 0.1 * number)
            vv = np.where(water, -20.0, -9.0) + rng.normal(0, 0.5, (size, size))
            vh = vv - 7.0 + rng.normal(0, 0.5, (size, size))
            vh[0, 1] = np.nan
            s1 = np.stack([vv, vh]).astype(np.float32)
            dn = 1000 + 100 * np.arange(13)[:, None, None] + rng.integers(0, 50, (13, size, size))
            dn = dn.astype(np.uint16)
            dn[:, 1, 0] = 0
            labels = water.astype(np.int16)
            labels[: size // 4, : size // 2] = -1
            if chip == empty_label:
                labels[:] = -1
            with rasterio.open(hand / "S1Hand" / f"{chip}_S1Hand.tif", "w", count=2,
                               dtype="float32", **profile) as dst:  # fmt: skip
                dst.write(s1)
            with rasterio.open(hand / "S2Hand" / f"{chip}_S2Hand.tif", "w", count=13,
                               dtype="uint16", **profile) as dst:  # fmt: skip
                dst.write(dn)
            with rasterio.open(hand / "LabelHand" / f"{chip}_LabelHand.tif", "w", count=1,
                               dtype="int16", **profile) as dst:  # fmt: skip
                dst.write(labels[None])
            rows.append(f"{chip}_S1Hand.tif,{chip}_LabelHand.tif")
            written[chip] = {
                "vv": s1[0], "vh": s1[1], "dn": dn, "labels": labels, "split": split,
                "crs": "EPSG:4326", "transform": tuple(transform)[:6],
            }  # fmt: skip
        csv_path = root / "splits" / "flood_handlabeled" / f"flood_{split}_data.csv"
        csv_path.write_text("\n".join(rows) + "\n")
    return written
