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
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from pimc_jax import progress as progress_lib
from pimc_jax import storage
from pimc_jax.data.pastis_files import (
    BACKGROUND_CLASS,
    PASTIS_BAND_NAMES,
    PASTIS_FOLDS,
    PASTIS_S1_BAND_NAMES,
    REFLECTANCE_SCALE,
    VOID_CLASS,
    check_folds,
    load_pastis_norm,
    patch_sort_key,
    read_pastis_metadata,
    read_pastis_patch_arrays,
    read_pastis_s1_array,
    yyyymmdd_to_days,
)
from pimc_jax.data.patches import Patch
from pimc_jax.data.radar import S1_ORBITS, check_s1_setting, merge_s1_series, s1_orbits

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
    folds = check_folds(folds)
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
    return sorted(patches, key=lambda p: (p.fold, *patch_sort_key({"patch_id": p.patch_id})))


__all__ = [
    "BACKGROUND_CLASS",
    "PASTIS_BAND_NAMES",
    "PASTIS_FOLDS",
    "PASTIS_S1_BAND_NAMES",
    "REFLECTANCE_SCALE",
    "VOID_CLASS",
    "LazyPatches",
    "Pastis",
    "default_data_dir",
    "load_pastis_norm",
    "load_pastis_patches",
    "patch_from_example",
    "prepare_pastis",
    "read_pastis_metadata",
    "read_pastis_patch_arrays",
    "read_pastis_s1_array",
    "yyyymmdd_to_days",
]
