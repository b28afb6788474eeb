"""PASTIS and PASTIS-R patches, read through a TFDS builder (array_record, no TensorFlow).

PASTIS (Sainte Fare Garnot & Landrieu, ICCV 2021) holds 2 433 Sentinel-2 image time
series patches of 128 x 128 pixels over France, each with 38 to 61 acquisitions and a
per-pixel crop type label (18 crop classes, background 0 and void 19; names in
:data:`~pimc_jax.data.classes.PASTIS_CLASS_NAMES`), split into five official
cross-validation folds. The data cannot be downloaded by TFDS: the user unpacks the
official archive and points the builder at it (the *manual directory*).

Layout of the manual directory (the official PASTIS archive, unchanged)::

    metadata.geojson           GeoJSON FeatureCollection, one feature per patch, whose
                               properties hold ID_PATCH (int), Fold (1..5) and dates-S2:
                               {"0": 20180924, "1": 20181004, ...} -- acquisition dates as
                               YYYYMMDD integers keyed by their index in the time series
                               (a JSON string holding that object is accepted too).
    DATA_S2/S2_<ID_PATCH>.npy  (T, 10, H, W) int16 digital numbers (reflectance x 10 000),
                               bands B2 B3 B4 B5 B6 B7 B8 B8A B11 B12.
    ANNOTATIONS/TARGET_<ID_PATCH>.npy
                               (3, H, W); channel 0 is the semantic class 0..19.
    NORM_S2_patch.json         {"Fold_1": {"mean": [10 floats], "std": [10 floats]}, ...}
                               per-fold band statistics in digital numbers (optional; read
                               by :func:`load_pastis_norm`).

PASTIS-R (Sainte Fare Garnot, Landrieu & Chehata, ISPRS J. 2022; https://zenodo.org/record/5735646)
is the same archive plus Sentinel-1 GRD series of every patch, one per orbit direction::

    DATA_S1A/S1A_<ID_PATCH>.npy  (T, 3, H, W) float32, ascending orbit, and
    DATA_S1D/S1D_<ID_PATCH>.npy  the same for the descending orbit: channels VV, VH and
                                 VV/VH, backscatter σ0 in dB, the ratio as the dB
                                 difference VV − VH (the channel means published with
                                 the data set, about −10.3, −16.9 and 6.6, agree with that).
    metadata.geojson             properties dates-S1A and dates-S1D beside dates-S2, in the
                                 same {index: YYYYMMDD} form (equal days allowed).
    NORM_S1A_patch.json,         per-fold channel statistics in dB (optional;
    NORM_S1D_patch.json          :func:`load_pastis_norm` with ``sensor="S1A"``).

An orbit's series exists for a patch when its .npy file does (then its dates are
required); a patch without it gets an empty series. Other files of the archive
(instance annotations) are ignored.

The builder :class:`Pastis` stores one example per patch with the features

    ``bands``     (T, H, W, 10) int16 digital numbers (time first, bands last),
    ``dates``     (T,) int32 days since 1970-01-01, strictly increasing,
    ``labels``    (H, W) int32 semantic class (channel 0 of TARGET),
    ``patch_id``  text, the ID_PATCH,
    ``fold``      int32 official fold 1..5,
    ``s1a_bands`` (T1, H, W, 3) float32 dB, ascending orbit, ``(0, H, W, 3)`` without it,
    ``s1a_dates`` (T1,) int32 days since 1970-01-01 (non-decreasing, as in the file),
    ``s1d_bands``, ``s1d_dates`` the same for the descending orbit,

in one split per fold, ``fold1`` ... ``fold5`` (TFDS split arithmetic such as
``"fold1+fold2"`` selects several). The number of dates stays variable, as in the files.
:func:`load_pastis_patches` prepares the builder once (by default into ``<manual dir>/tfds``)
and returns :class:`~pimc_jax.data.patches.Patch` objects that keep the int16 digital
numbers (``reflectance_scale`` 10 000; ``patch.reflectance()`` converts). After the
files in the manual directory change, delete the prepared directory so that it is rebuilt.
With ``s1="S1A"``, ``"S1D"`` or ``"both"`` (merged by date,
:func:`~pimc_jax.data.radar.merge_s1_series`) the patches also carry that Sentinel-1
series (``patch.s1_bands`` in dB, ``patch.s1_dates``; an empty one where the patch has
none, counted in the log).
"""

from __future__ import annotations

import collections.abc
import contextlib
import datetime
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from pimc_jax import progress as progress_lib
from pimc_jax import storage
from pimc_jax.data.patches import Patch
from pimc_jax.data.radar import S1_ORBITS, check_s1_setting, merge_s1_series, s1_orbits
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

_CITATION = """
@inproceedings{garnot2021panoptic,
  title={Panoptic Segmentation of Satellite Image Time Series with Convolutional Temporal
         Attention Networks},
  author={Sainte Fare Garnot, Vivien and Landrieu, Loic},
  booktitle={ICCV},
  year={2021}
}
"""


def default_data_dir(manual_dir: str | os.PathLike[str]) -> Path:
    """Where a builder prepared from ``manual_dir`` writes its array_record files.

    ``<manual_dir>/tfds`` when ``manual_dir`` is writable, else a per-directory folder
    under ``$XDG_CACHE_HOME/pimc_jax/tfds`` (``~/.cache`` by default), keyed by a hash of
    the resolved path so that two copies of a dataset never share prepared files. A
    remote ``manual_dir`` (``gs://``) is always prepared into that local folder, keyed by
    its URL.
    """
    if storage.is_remote(manual_dir):
        resolved = os.fspath(manual_dir).rstrip("/")
    else:
        manual_dir = Path(manual_dir)
        if os.access(manual_dir, os.W_OK):
            return manual_dir / "tfds"
        resolved = str(manual_dir.resolve())
    cache_root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    key = hashlib.sha256(resolved.encode()).hexdigest()[:16]
    return cache_root / "pimc_jax" / "tfds" / key


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
    return sorted(entries, key=_patch_sort_key)


def _patch_sort_key(entry: Mapping[str, Any]) -> tuple[int, str]:
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


class Pastis(tfds.core.GeneratorBasedBuilder):
    """PASTIS / PASTIS-R patches from the official archive in a manual directory."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Sentinel-2 patches, semantic labels, one split per fold.",
        "1.1.0": "PASTIS-R Sentinel-1 series of both orbits (empty where absent).",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download PASTIS from https://zenodo.org/record/5012942 (PASTIS.zip), or PASTIS-R
    (with Sentinel-1) from https://zenodo.org/record/5735646, and unpack it. Pass the
    folder that holds metadata.geojson, DATA_S2/ and ANNOTATIONS/ (and DATA_S1A/,
    DATA_S1D/) as the manual directory (`load_pastis_patches(path)` does this for you).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        zlib = tfds.features.Encoding.ZLIB
        num_bands = len(PASTIS_BAND_NAMES)
        return tfds.core.DatasetInfo(
            builder=self,
            description="PASTIS Sentinel-2 image time series with per-pixel crop classes.",
            features=tfds.features.FeaturesDict(
                {
                    "bands": tfds.features.Tensor(
                        shape=(None, None, None, num_bands), dtype=np.int16, encoding=zlib
                    ),
                    "dates": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "labels": tfds.features.Tensor(
                        shape=(None, None), dtype=np.int32, encoding=zlib
                    ),
                    "patch_id": tfds.features.Text(),
                    "fold": tfds.features.Scalar(dtype=np.int32),
                    **{
                        f"{orbit.lower()}_{key}": feature
                        for orbit in S1_ORBITS
                        for key, feature in (
                            (
                                "bands",
                                tfds.features.Tensor(
                                    shape=(None, None, None, len(PASTIS_S1_BAND_NAMES)),
                                    dtype=np.float32,
                                    encoding=zlib,
                                ),
                            ),
                            ("dates", tfds.features.Tensor(shape=(None,), dtype=np.int32)),
                        )
                    },
                }
            ),
            homepage="https://github.com/VSainteuf/pastis-benchmark",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        manual_dir = storage.as_path(dl_manager.manual_dir)
        entries = read_pastis_metadata(manual_dir)
        for orbit in S1_ORBITS:
            missing = sum(entry[f"{orbit.lower()}_dates"] is None for entry in entries)
            if missing:
                logging.info(
                    "PASTIS at %s: %d of %d patches have no %s series (stored empty)",
                    manual_dir,
                    missing,
                    len(entries),
                    orbit,
                )
        splits = {}
        for fold in PASTIS_FOLDS:
            fold_entries = [entry for entry in entries if entry["fold"] == fold]
            if fold_entries:
                splits[f"fold{fold}"] = self._generate_examples(manual_dir, fold_entries)
        return splits

    def _generate_examples(
        self, manual_dir: Path, entries: Sequence[Mapping[str, Any]]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        fold = entries[0]["fold"] if entries else ""
        for entry in progress_lib.progress(
            entries, desc=f"Preparing PASTIS fold {fold}", unit="patch"
        ):
            patch_id = entry["patch_id"]
            bands, labels = read_pastis_patch_arrays(manual_dir, patch_id, len(entry["dates"]))
            example = {
                "bands": bands,
                "dates": entry["dates"],
                "labels": labels,
                "patch_id": patch_id,
                "fold": entry["fold"],
            }
            for orbit in S1_ORBITS:
                key = orbit.lower()
                s1_dates = entry[f"{key}_dates"]
                if s1_dates is None:
                    s1_dates = np.zeros((0,), np.int32)
                    s1_bands = np.zeros((0, *labels.shape, len(PASTIS_S1_BAND_NAMES)), np.float32)
                else:
                    s1_bands = read_pastis_s1_array(
                        manual_dir, orbit, patch_id, len(s1_dates), labels.shape
                    )
                example[f"{key}_bands"] = s1_bands
                example[f"{key}_dates"] = s1_dates
            yield patch_id, example


def prepare_pastis(
    path: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None
) -> Pastis:
    """Checks the PASTIS directory ``path`` and prepares the builder (once).

    Args:
      path: the manual directory (official PASTIS layout, see the module docstring).
      data_dir: where the array_record files go; default :func:`default_data_dir`.

    Returns:
      The prepared builder; ``builder.as_data_source(split="fold1+fold2")`` reads it.
    """
    path = storage.as_path(path)
    if not path.is_dir():
        raise ValueError(f"PASTIS directory not found: {path}")
    builder = Pastis(
        data_dir=str(data_dir if data_dir is not None else default_data_dir(path)),
        file_format="array_record",
    )
    if not builder.is_prepared():
        # Fail early, naming the file, before TFDS starts; a prepared dataset is not
        # re-checked (that would stat every patch file on each load).
        read_pastis_metadata(path)
        with _tfds_bars(progress_lib.progress_enabled()):
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=str(path))
            )
    return builder


@contextlib.contextmanager
def _tfds_bars(enabled: bool) -> Iterator[None]:
    """TFDS's own progress bars on or off for the block (they print even into logs)."""
    tqdm_utils = tfds.core.utils.tqdm_utils
    before = getattr(tqdm_utils, "_active", True)
    tfds.display_progress_bar(enabled)
    try:
        yield
    finally:
        tfds.display_progress_bar(before)


def patch_from_example(example: Mapping[str, Any], s1: str | None = None) -> Patch:
    """One stored example -> :class:`Patch` keeping the int16 digital numbers.

    ``patch.reflectance()`` gives DN / 10 000; keeping the integers quarters the memory
    of a loaded dataset. With ``s1`` (``"S1A"``, ``"S1D"`` or ``"both"``) the patch also
    holds that Sentinel-1 series: ``s1_bands`` ``(T1, H, W, 3)`` float32 dB, ``s1_dates``
    ``(T1,)`` int32 (orbits merged by date for ``"both"``, equal days averaged in linear
    power), ``s1_band_names`` :data:`PASTIS_S1_BAND_NAMES`; ``T1 = 0`` without one.
    """
    patch_id = example["patch_id"]
    if isinstance(patch_id, bytes):
        patch_id = patch_id.decode()
    s1_fields: dict[str, Any] = {}
    setting = check_s1_setting(s1)
    if setting is not None:
        labels_shape = np.shape(example["labels"])
        series = [
            (np.asarray(example[f"{orbit.lower()}_bands"], np.float32),
             np.asarray(example[f"{orbit.lower()}_dates"], np.int32))
            for orbit in s1_orbits(setting)
        ]  # fmt: skip
        if any(dates.size for _, dates in series):
            s1_bands, s1_dates = merge_s1_series(series, PASTIS_S1_BAND_NAMES)
        else:
            s1_bands = np.zeros((0, *labels_shape, len(PASTIS_S1_BAND_NAMES)), np.float32)
            s1_dates = np.zeros((0,), np.int32)
        s1_fields = dict(s1_bands=s1_bands, s1_dates=s1_dates, s1_band_names=PASTIS_S1_BAND_NAMES)
    return Patch(
        bands=np.asarray(example["bands"], np.int16),
        dates=np.asarray(example["dates"], np.int32),
        band_names=PASTIS_BAND_NAMES,
        labels=np.asarray(example["labels"], np.int32),
        patch_id=str(patch_id),
        fold=int(example["fold"]),
        reflectance_scale=REFLECTANCE_SCALE,
        **s1_fields,
    )


def _check_folds(folds: Iterable[int]) -> tuple[int, ...]:
    folds = tuple(int(fold) for fold in folds)
    unknown = [fold for fold in folds if fold not in PASTIS_FOLDS]
    if not folds or unknown:
        raise ValueError(f"PASTIS folds must be a non-empty subset of {PASTIS_FOLDS}, got {folds}")
    return folds


class LazyPatches(collections.abc.Sequence):
    """PASTIS patches decoded from the prepared data source on access, never all at once.

    For passes that visit each patch once or twice (pixel sampling for the evaluations,
    band statistics), this keeps memory at one patch instead of the ~70 GB of the whole
    dataset. Slicing gives another lazy view. ``s1``: the Sentinel-1 series each patch
    carries (:func:`patch_from_example`).
    """

    def __init__(self, source: Any, indices: Sequence[int], s1: str | None = None):
        self._source = source
        self._indices = list(indices)
        self._s1 = check_s1_setting(s1)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, item: int | slice) -> Any:
        if isinstance(item, slice):
            return LazyPatches(self._source, self._indices[item], self._s1)
        return patch_from_example(self._source[self._indices[item]], self._s1)


def load_pastis_patches(
    path: str | os.PathLike[str],
    folds: Sequence[int] = PASTIS_FOLDS,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    process_index: int = 0,
    process_count: int = 1,
    lazy: bool = False,
    s1: str | None = None,
) -> Sequence[Patch]:
    """Reads the PASTIS patches of the given official folds (this process's shard).

    Args:
      path: the manual directory in the official PASTIS layout (module docstring), a
        local path or a ``gs://`` URL (:mod:`pimc_jax.storage`).
      folds: official folds to read, any of 1..5.
      data_dir: where the builder's array_record files go; default
        :func:`default_data_dir` (``<path>/tfds`` when writable).
      process_index / process_count: decode only every ``process_count``-th record of
        the prepared dataset, starting at ``process_index`` (each host of a multi-host
        run reads its own shard).
      lazy: return a :class:`LazyPatches` view that decodes each patch when it is
        accessed (in the data source's order) instead of a list held in memory.
      s1: also read the PASTIS-R Sentinel-1 series of orbit ``"S1A"``, ``"S1D"`` or
        ``"both"`` (merged by date); ``None`` / ``"none"``: S2 only. Patches without that
        series get an empty one (``patch.has_s1`` False); eager loading logs their count.

    Returns:
      Patches: bands (T, H, W, 10) int16 digital numbers with ``reflectance_scale``
      10 000 (``patch.reflectance()`` gives float32 reflectance), dates (T,) int32 days
      since 1970-01-01, labels (H, W) int32, band names :data:`PASTIS_BAND_NAMES`.
      Eagerly loaded patches are sorted by (fold, ID_PATCH) and all held in memory
      (about 24 GB for the whole dataset as int16: shard it over hosts, or use ``lazy``).

    Raises:
      ValueError naming the file when the directory is incomplete or malformed, or when
      none of the requested folds holds a patch.
    """
    folds = _check_folds(folds)
    s1 = check_s1_setting(s1)
    builder = prepare_pastis(path, data_dir)
    present = [fold for fold in folds if f"fold{fold}" in builder.info.splits]
    absent = sorted(set(folds) - set(present))
    if not present:
        raise ValueError(f"{storage.as_path(path) / 'metadata.geojson'}: no patch in folds {folds}")
    if absent:
        logging.warning("PASTIS at %s has no patch in folds %s", path, absent)
    source = builder.as_data_source(split="+".join(f"fold{fold}" for fold in present))
    indices = range(process_index, len(source), process_count)
    if lazy:
        return LazyPatches(source, indices, s1)
    patches = [
        patch_from_example(source[index], s1)
        for index in progress_lib.progress(indices, desc="Loading PASTIS", unit="patch")
    ]
    if s1 is not None:
        missing = sum(not patch.has_s1 for patch in patches)
        if missing:
            logging.warning(
                "PASTIS at %s: %d of %d patches have no Sentinel-1 series (%s); they are "
                "left out of Sentinel-1 views",
                path,
                missing,
                len(patches),
                s1,
            )
    return sorted(patches, key=lambda p: (p.fold, *_patch_sort_key({"patch_id": p.patch_id})))


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
    folds = _check_folds(folds)
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
