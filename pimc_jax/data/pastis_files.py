"""The files of the official PASTIS / PASTIS-R archive, read and checked with NumPy.

The layout is described in :mod:`pimc_jax.data.pastis`; these readers parse
``metadata.geojson``, one patch's ``DATA_S2`` / ``DATA_S1A`` / ``DATA_S1D`` and
``ANNOTATIONS`` arrays, and the ``NORM_*_patch.json`` statistics, each failing with a
one-line ValueError that names the file. Local paths and ``gs://`` URLs both work.
"""

from __future__ import annotations

import datetime
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pimc_jax import storage
from pimc_jax.data.radar import S1_ORBITS
from pimc_jax.indices import BAND_TABLES, S1_BAND_NAMES

PASTIS_BAND_NAMES: tuple[str, ...] = BAND_TABLES["pastis"]
#: Channels of PASTIS-R's DATA_S1A / DATA_S1D series (dB).
PASTIS_S1_BAND_NAMES: tuple[str, ...] = S1_BAND_NAMES
BACKGROUND_CLASS = 0
VOID_CLASS = 19
PASTIS_FOLDS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: Sentinel-2 L2A digital numbers are reflectance x 10 000.
REFLECTANCE_SCALE = 10_000.0

_EPOCH = datetime.date(1970, 1, 1)


def yyyymmdd_to_days(value: int | str) -> int:
    """``20180924`` (int or str) -> days since 1970-01-01. ValueError if not a valid date."""
    text = str(value).strip()
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"expected a YYYYMMDD date, got {value!r}")
    try:
        date = datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError as err:
        raise ValueError(f"invalid YYYYMMDD date {value!r}: {err}") from None
    return (date - _EPOCH).days


def _s2_file(manual_dir: Path, patch_id: str) -> Path:
    return manual_dir / "DATA_S2" / f"S2_{patch_id}.npy"


def _s1_file(manual_dir: Path, orbit: str, patch_id: str) -> Path:
    return manual_dir / f"DATA_{orbit}" / f"{orbit}_{patch_id}.npy"


def _parse_dates(raw_dates: Any, key: str, where: str, *, strict: bool = True) -> np.ndarray:
    """A ``{index: YYYYMMDD}`` object (or its JSON text, or a list) -> (T,) int32 days."""
    if isinstance(raw_dates, str):
        try:
            raw_dates = json.loads(raw_dates)
        except json.JSONDecodeError:
            raise ValueError(f"{where}: {key} is not a JSON object") from None
    if isinstance(raw_dates, list):
        raw_dates = {str(i): d for i, d in enumerate(raw_dates)}
    if not isinstance(raw_dates, Mapping) or not raw_dates:
        raise ValueError(f"{where}: {key} must be a non-empty {{index: YYYYMMDD}} object")
    try:
        order = sorted(raw_dates, key=int)
        dates = np.array([yyyymmdd_to_days(raw_dates[k]) for k in order], np.int32)
    except ValueError as err:
        raise ValueError(f"{where}: {key}: {err}") from None
    steps = np.diff(dates)
    if np.any(steps <= 0) if strict else np.any(steps < 0):
        order_kind = "strictly increasing" if strict else "in time order"
        raise ValueError(f"{where}: {key} are not {order_kind}")
    return dates


def _target_file(manual_dir: Path, patch_id: str) -> Path:
    return manual_dir / "ANNOTATIONS" / f"TARGET_{patch_id}.npy"


def _load_npy(path: os.PathLike[str]) -> np.ndarray:
    """``np.load`` of a local ``.npy`` file, or of a remote one's bytes."""
    if storage.is_remote(path):
        return np.load(io.BytesIO(storage.as_path(path).read_bytes()))
    return np.load(path)


def read_pastis_metadata(manual_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parses ``metadata.geojson`` and checks that every patch's files exist.

    Returns:
      One dict per patch, sorted by ID_PATCH: ``patch_id`` (str), ``fold`` (int 1..5),
      ``dates`` ((T,) int32 days since 1970-01-01, in time-series order), and per orbit
      ``s1a_dates`` / ``s1d_dates``: (T1,) int32 days when the patch's DATA_S1A / DATA_S1D
      file exists, else None.

    Raises:
      ValueError naming the file when it is missing, is not a FeatureCollection, lacks a
      property, holds an invalid date or fold, or when a patch's .npy files are missing
      (or an S1 file exists without its dates-S1A / dates-S1D).
    """
    manual_dir = storage.as_path(manual_dir)
    meta_file = manual_dir / "metadata.geojson"
    if not meta_file.is_file():
        raise ValueError(f"PASTIS metadata file not found: {meta_file}")
    try:
        collection = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_file}: not valid JSON ({err})") from None
    features = collection.get("features") if isinstance(collection, Mapping) else None
    if not isinstance(features, list):
        raise ValueError(f"{meta_file}: expected a GeoJSON FeatureCollection with 'features'")

    entries = []
    for index, feature in enumerate(features):
        props = feature.get("properties") if isinstance(feature, Mapping) else None
        if not isinstance(props, Mapping):
            raise ValueError(f"{meta_file}: feature {index} has no properties")
        missing = [key for key in ("ID_PATCH", "Fold", "dates-S2") if key not in props]
        if missing:
            raise ValueError(f"{meta_file}: feature {index} lacks properties {missing}")
        patch_id = str(props["ID_PATCH"])
        where = f"{meta_file}: patch {patch_id}"
        try:
            fold = int(props["Fold"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: Fold must be an integer, got {props['Fold']!r}") from None
        if fold not in PASTIS_FOLDS:
            raise ValueError(f"{where}: Fold must be one of {PASTIS_FOLDS}, got {fold}")
        dates = _parse_dates(props["dates-S2"], "dates-S2", where)
        for path in (_s2_file(manual_dir, patch_id), _target_file(manual_dir, patch_id)):
            if not path.is_file():
                raise ValueError(f"PASTIS file not found for patch {patch_id}: {path}")
        entry = {"patch_id": patch_id, "fold": fold, "dates": dates}
        for orbit in S1_ORBITS:
            entry[f"{orbit.lower()}_dates"] = None
            if _s1_file(manual_dir, orbit, patch_id).is_file():
                key = f"dates-{orbit}"
                if key not in props:
                    raise ValueError(
                        f"{where}: {_s1_file(manual_dir, orbit, patch_id).name} exists but "
                        f"the feature has no {key} property"
                    )
                entry[f"{orbit.lower()}_dates"] = _parse_dates(props[key], key, where, strict=False)
        entries.append(entry)

    if not entries:
        raise ValueError(f"{meta_file}: no patches")
    ids = [entry["patch_id"] for entry in entries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{meta_file}: duplicate ID_PATCH values")
    return sorted(entries, key=patch_sort_key)


def patch_sort_key(entry: Mapping[str, Any]) -> tuple[int, str]:
    patch_id = entry["patch_id"]
    return (int(patch_id), "") if patch_id.isdigit() else (0, patch_id)


def read_pastis_patch_arrays(
    manual_dir: str | os.PathLike[str], patch_id: str, num_dates: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reads and checks one patch's files.

    Returns:
      ``bands`` (T, H, W, 10) int16 digital numbers and ``labels`` (H, W) int32.

    Raises:
      ValueError naming the file when a shape, dtype or class value is wrong.
    """
    manual_dir = storage.as_path(manual_dir)
    s2_file = _s2_file(manual_dir, patch_id)
    target_file = _target_file(manual_dir, patch_id)
    try:
        data = _load_npy(s2_file)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {s2_file}: {err}") from None
    expected = f"({num_dates}, {len(PASTIS_BAND_NAMES)}, H, W)"
    if data.ndim != 4 or data.shape[0] != num_dates or data.shape[1] != len(PASTIS_BAND_NAMES):
        raise ValueError(
            f"{s2_file}: expected shape {expected} (T from dates-S2 in metadata.geojson), "
            f"got {data.shape}"
        )
    if not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"{s2_file}: expected integer digital numbers, got dtype {data.dtype}")
    info = np.iinfo(np.int16)
    if data.size and (data.min() < info.min or data.max() > info.max):
        raise ValueError(f"{s2_file}: values outside the int16 range")
    bands = np.ascontiguousarray(np.transpose(data, (0, 2, 3, 1)).astype(np.int16))

    try:
        target = _load_npy(target_file)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {target_file}: {err}") from None
    height, width = data.shape[2:]
    if target.ndim != 3 or target.shape[1:] != (height, width):
        raise ValueError(
            f"{target_file}: expected shape (3, {height}, {width}) to match {s2_file.name}, "
            f"got {target.shape}"
        )
    semantic = target[0]
    if not np.all(semantic == np.round(semantic)) or semantic.min() < 0:
        raise ValueError(f"{target_file}: channel 0 must hold integer classes 0..{VOID_CLASS}")
    if semantic.max() > VOID_CLASS:
        raise ValueError(
            f"{target_file}: class {int(semantic.max())} outside 0..{VOID_CLASS} in channel 0"
        )
    return bands, semantic.astype(np.int32)


def read_pastis_s1_array(
    manual_dir: str | os.PathLike[str],
    orbit: str,
    patch_id: str,
    num_dates: int,
    size: tuple[int, int],
) -> np.ndarray:
    """Reads and checks one patch's Sentinel-1 file of ``orbit`` (``"S1A"`` or ``"S1D"``).

    Returns:
      ``(T1, H, W, 3)`` float32 dB values (time first, channels last), ±inf as NaN.

    Raises:
      ValueError naming the file when its shape or dtype is wrong.
    """
    s1_file = _s1_file(storage.as_path(manual_dir), orbit, patch_id)
    try:
        data = _load_npy(s1_file)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {s1_file}: {err}") from None
    num_channels = len(PASTIS_S1_BAND_NAMES)
    if data.ndim != 4 or data.shape[0] != num_dates or data.shape[1:] != (num_channels, *size):
        raise ValueError(
            f"{s1_file}: expected shape ({num_dates}, {num_channels}, {size[0]}, {size[1]}) "
            f"(T from dates-{orbit}, H and W of the S2 file), got {data.shape}"
        )
    if not np.issubdtype(data.dtype, np.floating):
        raise ValueError(f"{s1_file}: expected float backscatter in dB, got dtype {data.dtype}")
    values = np.ascontiguousarray(np.transpose(data, (0, 2, 3, 1)).astype(np.float32))
    values[np.isinf(values)] = np.nan
    return values


def check_folds(folds: Iterable[int]) -> tuple[int, ...]:
    folds = tuple(int(fold) for fold in folds)
    unknown = [fold for fold in folds if fold not in PASTIS_FOLDS]
    if not folds or unknown:
        raise ValueError(f"PASTIS folds must be a non-empty subset of {PASTIS_FOLDS}, got {folds}")
    return folds


def load_pastis_norm(
    path: str | os.PathLike[str],
    folds: Sequence[int] = PASTIS_FOLDS,
    *,
    sensor: str = "S2",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std from ``NORM_<sensor>_patch.json``.

    Like the official data loader, the statistics of the selected folds are averaged.

    Args:
      sensor: ``"S2"`` (reflectance) or PASTIS-R's ``"S1A"`` / ``"S1D"`` (dB).

    Returns:
      ``mean`` and ``std``, each (C,) float32: for S2 (10,) in reflectance (DN / 10 000),
      band order :data:`PASTIS_BAND_NAMES`; for S1 (3,) in dB, channel order
      :data:`PASTIS_S1_BAND_NAMES`.
    """
    folds = check_folds(folds)
    if sensor not in ("S2", *S1_ORBITS):
        raise ValueError(f"sensor must be 'S2', 'S1A' or 'S1D', got {sensor!r}")
    names = PASTIS_BAND_NAMES if sensor == "S2" else PASTIS_S1_BAND_NAMES
    scale = REFLECTANCE_SCALE if sensor == "S2" else 1.0
    norm_file = storage.as_path(path) / f"NORM_{sensor}_patch.json"
    if not norm_file.is_file():
        raise ValueError(f"PASTIS normalisation file not found: {norm_file}")
    stats = json.loads(norm_file.read_text())
    means, stds = [], []
    for fold in folds:
        entry = stats.get(f"Fold_{fold}") if isinstance(stats, Mapping) else None
        if not isinstance(entry, Mapping) or "mean" not in entry or "std" not in entry:
            raise ValueError(f"{norm_file}: no 'Fold_{fold}' entry with 'mean' and 'std'")
        for key, out in (("mean", means), ("std", stds)):
            values = np.asarray(entry[key], np.float64)
            if values.shape != (len(names),):
                raise ValueError(
                    f"{norm_file}: Fold_{fold} {key} must hold {len(names)} "
                    f"values, got shape {values.shape}"
                )
            out.append(values)
    mean = np.mean(means, axis=0) / scale
    std = np.mean(stds, axis=0) / scale
    return mean.astype(np.float32), std.astype(np.float32)
