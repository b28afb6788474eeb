"""EuroSAT land-cover images from the official archives, through a TFDS builder.

EuroSAT (Helber et al. 2019) holds 27 000 Sentinel-2 images of 64 x 64 pixels in 10
land-cover classes. The TFDS catalogue builder ``eurosat`` downloads the archives and
needs TensorFlow to read them; :class:`EurosatArchive` reads the same archives from a
local (manual) directory without TensorFlow and writes array_record files.

Manual directory::

    EuroSAT.zip            config "rgb": 2750/<Class>/<Class>_<n>.jpg, RGB JPEG, 64 x 64
                           (EuroSAT_RGB.zip from the Zenodo release is accepted too).
    EuroSATallBands.zip    config "all":
                           ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/
                           <Class>_<n>.tif, 13-band GeoTIFF, uint16 digital numbers
                           (EuroSAT_MS.zip from the Zenodo release is accepted too).
    train.txt, val.txt, test.txt
                           optional split lists, one image file name per line (e.g.
                           ``AnnualCrop_1.jpg``; directories and the extension are ignored,
                           so the same lists serve both configs). ``eurosat-train.txt``,
                           ``eurosat-val.txt`` and ``eurosat-test.txt`` are accepted too;
                           the widely used lists hold 16 200 / 5 400 / 5 400 names.

Only members named ``<Class>/<Class>_<n>.<ext>`` with one of the ten class names count;
anything else in an archive is ignored. Classes, in label order:
:data:`~pimc_jax.data.classes.EUROSAT_CLASS_NAMES`.

Configs and features:

    ``rgb``  ``image`` (64, 64, 3) uint8, ``label`` ClassLabel, ``filename`` text.
    ``all``  ``sentinel2`` (64, 64, 13) float32 digital numbers in the band order of the
             files, :data:`EUROSAT_ALL_BAND_NAMES` (B01..B12, then B8A last),
             ``label`` ClassLabel, ``filename`` text.

Splits ``train``, ``validation`` and ``test``. With split lists in the manual directory
they follow the lists (every listed name must exist; a name in two lists is an error;
images in no list are left out). Without lists the split is stratified and seeded:
for each class in label order, its images sorted by their number ``n`` are permuted with
one ``numpy.random.default_rng(SPLIT_SEED)`` generator shared across the classes (seed 0);
the first ``round(0.2 * count)`` go to validation, the next ``round(0.2 * count)`` to test,
the rest to train -- 16 200 / 5 400 / 5 400 on the full dataset. A split that would be
empty (tiny archives, an empty list) is left out, as TFDS cannot write one, and
:func:`load_eurosat` reports it as an error. The method used is
recorded in the prepared dataset's metadata; :func:`load_eurosat` rebuilds the dataset
when the split lists appear, disappear or change.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
import tifffile
from absl import logging
from etils import epath
from PIL import Image

from pimc_jax import storage
from pimc_jax.data import splits
from pimc_jax.data.classes import EUROSAT_CLASS_NAMES
from pimc_jax.data.pastis import default_data_dir
from pimc_jax.indices import BAND_TABLES

#: Band order of the 13-band GeoTIFFs (B8A is stored last).
EUROSAT_ALL_BAND_NAMES: tuple[str, ...] = BAND_TABLES["eurosat"]
#: Sentinel-2 bands behind the red, green and blue channels of the JPEGs.
EUROSAT_RGB_BAND_NAMES: tuple[str, ...] = ("B04", "B03", "B02")
IMAGE_SIZE = 64
SPLIT_SEED = 0
SPLITS: tuple[str, ...] = ("train", "validation", "test")

_ARCHIVES = {
    "rgb": ("EuroSAT.zip", "EuroSAT_RGB.zip"),
    "all": ("EuroSATallBands.zip", "EuroSAT_MS.zip"),
}
_EXTENSIONS = {"rgb": ".jpg", "all": ".tif"}
_SPLIT_LIST_FILES = {
    "train": ("train.txt", "eurosat-train.txt"),
    "validation": ("val.txt", "eurosat-val.txt"),
    "test": ("test.txt", "eurosat-test.txt"),
}
_MEMBER_PATTERN = re.compile(r"(?:^|/)([A-Za-z]+)/([A-Za-z]+)_(\d+)\.(\w+)$")
#: Scale from stored values to [0, 1]: 8-bit JPEG values / 255, digital numbers / 10 000.
_REFLECTANCE_SCALE = {"rgb": 255.0, "all": 10_000.0}

_CITATION = """
@article{helber2019eurosat,
  title={EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and Land Cover
         Classification},
  author={Helber, Patrick and Bischke, Benjamin and Dengel, Andreas and Borth, Damian},
  journal={IEEE Journal of Selected Topics in Applied Earth Observations and Remote Sensing},
  year={2019}
}
"""


def find_archive(manual_dir: str | os.PathLike[str], config: str) -> epath.Path:
    """Path of the archive of ``config`` ("rgb" or "all") in ``manual_dir`` (local or
    ``gs://``)."""
    if config not in _ARCHIVES:
        raise ValueError(f"EuroSAT config must be 'rgb' or 'all', got {config!r}")
    manual_dir = storage.as_path(manual_dir)
    for name in _ARCHIVES[config]:
        candidate = manual_dir / name
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"EuroSAT archive for config {config!r} not found: expected "
        f"{manual_dir / _ARCHIVES[config][0]} (or {_ARCHIVES[config][1]})"
    )


@contextlib.contextmanager
def _open_zip(archive: os.PathLike[str]) -> Iterator[zipfile.ZipFile]:
    """The zip archive, local or remote (read through a seekable remote file)."""
    if not storage.is_remote(archive):
        with zipfile.ZipFile(archive) as zip_file:
            yield zip_file
        return
    with storage.as_path(archive).open("rb") as raw, zipfile.ZipFile(raw) as zip_file:
        yield zip_file


def list_archive_images(archive: os.PathLike[str], config: str) -> list[tuple[str, str, int]]:
    """``(member, class_name, n)`` of every image in the archive, by (class, n).

    Raises:
      ValueError naming the archive when it is unreadable or a class has no image.
    """
    try:
        with _open_zip(archive) as zip_file:
            names = zip_file.namelist()
    except (OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read EuroSAT archive {archive}: {err}") from None
    images = []
    for member in names:
        match = _MEMBER_PATTERN.search(member)
        if match is None:
            continue
        folder, prefix, number, extension = match.groups()
        if folder != prefix or folder not in EUROSAT_CLASS_NAMES:
            continue
        if "." + extension.lower() != _EXTENSIONS[config]:
            continue
        images.append((member, folder, int(number)))
    missing = [name for name in EUROSAT_CLASS_NAMES if name not in {c for _, c, _ in images}]
    if missing:
        raise ValueError(
            f"{archive}: no <Class>/<Class>_<n>{_EXTENSIONS[config]} image for classes {missing}"
        )
    order = {name: index for index, name in enumerate(EUROSAT_CLASS_NAMES)}
    return sorted(images, key=lambda image: (order[image[1]], image[2]))


def _stem(name: str) -> str:
    return Path(name.strip().replace("\\", "/")).stem


def _read_split_lists(
    manual_dir: epath.Path,
) -> dict[str, tuple[epath.Path, list[str]]] | None:
    found = {}
    for split, candidates in _SPLIT_LIST_FILES.items():
        for name in candidates:
            if (manual_dir / name).is_file():
                path = manual_dir / name
                stems = [_stem(line) for line in path.read_text().splitlines() if line.strip()]
                found[split] = (path, stems)
                break
    if not found:
        return None
    if len(found) != len(_SPLIT_LIST_FILES):
        absent = [_SPLIT_LIST_FILES[s][0] for s in _SPLIT_LIST_FILES if s not in found]
        raise ValueError(f"EuroSAT split lists in {manual_dir} are incomplete: missing {absent}")
    return found


def seeded_split_assignment(labels: Sequence[int], seed: int = SPLIT_SEED) -> np.ndarray:
    """Seeded stratified 60/20/20 assignment (the method in the module docstring).

    Per class, :func:`pimc_jax.data.splits.stratified_split` with fractions (0.2, 0.2):
    the first 20 % of the permuted images go to validation, the next 20 % to test.

    Args:
      labels: (N,) class index of each image, images of a class in their canonical order.
      seed: seed of the one generator shared across classes.

    Returns:
      (N,) int array: 0 = train, 1 = validation, 2 = test.
    """
    validation, test, _ = splits.stratified_split(np.asarray(labels), (0.2, 0.2), seed)
    assignment = np.zeros(len(labels), np.int32)
    assignment[validation] = 1
    assignment[test] = 2
    return assignment


def split_method(manual_dir: str | os.PathLike[str]) -> str:
    """How :class:`EurosatArchive` splits the images of ``manual_dir`` (recorded when prepared)."""
    lists = _read_split_lists(storage.as_path(manual_dir))
    if lists is None:
        return f"stratified-60-20-20-seed-{SPLIT_SEED}"
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update("\n".join([split, *lists[split][1]]).encode())
    return f"lists-{digest.hexdigest()[:16]}"


def _assign_splits(
    manual_dir: epath.Path, images: Sequence[tuple[str, str, int]]
) -> list[str | None]:
    lists = _read_split_lists(manual_dir)
    if lists is None:
        order = {name: index for index, name in enumerate(EUROSAT_CLASS_NAMES)}
        assignment = seeded_split_assignment([order[c] for _, c, _ in images])
        return [SPLITS[index] for index in assignment]
    by_stem = {_stem(member): index for index, (member, _, _) in enumerate(images)}
    result: list[str | None] = [None] * len(images)
    for split, (list_file, stems) in lists.items():
        unknown = [stem for stem in stems if stem not in by_stem]
        if unknown:
            raise ValueError(
                f"{list_file}: {len(unknown)} names not in the archive, e.g. {unknown[:3]}"
            )
        for stem in stems:
            index = by_stem[stem]
            if result[index] is not None:
                raise ValueError(f"{list_file}: {stem} is also listed for {result[index]}")
            result[index] = split
    unlisted = sum(split is None for split in result)
    if unlisted:
        logging.info("EuroSAT: %d images are in no split list and are left out", unlisted)
    return result


def _decode_jpeg(data: bytes, member: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image.convert("RGB"), np.uint8)
    except OSError as err:
        raise ValueError(f"cannot decode EuroSAT image {member}: {err}") from None
    if array.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"{member}: expected a 64 x 64 RGB image, got shape {array.shape}")
    return array


def _decode_tiff(data: bytes, member: str) -> np.ndarray:
    try:
        array = tifffile.imread(io.BytesIO(data))
    except Exception as err:  # tifffile raises several exception types on corrupt files
        raise ValueError(f"cannot decode EuroSAT GeoTIFF {member}: {err}") from None
    num_bands = len(EUROSAT_ALL_BAND_NAMES)
    if array.shape == (num_bands, IMAGE_SIZE, IMAGE_SIZE):  # planar (band-separate) file
        array = np.transpose(array, (1, 2, 0))
    if array.shape != (IMAGE_SIZE, IMAGE_SIZE, num_bands):
        raise ValueError(
            f"{member}: expected a 64 x 64 image with {num_bands} bands, got shape {array.shape}"
        )
    return array.astype(np.float32)


class EurosatArchiveConfig(tfds.core.BuilderConfig):
    """Selects the RGB JPEGs ("rgb") or the 13-band GeoTIFFs ("all")."""


class EurosatArchive(tfds.core.GeneratorBasedBuilder):
    """EuroSAT from the official archives in a manual directory, without TensorFlow."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "rgb and all configs; train / validation / test splits."}
    BUILDER_CONFIGS = [
        EurosatArchiveConfig(name="rgb", description="RGB JPEGs from EuroSAT.zip"),
        EurosatArchiveConfig(name="all", description="13-band GeoTIFFs from EuroSATallBands.zip"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download EuroSAT.zip (config "rgb") and/or EuroSATallBands.zip (config "all") from
    https://github.com/phelber/eurosat and put them, unextracted, in the manual directory;
    optionally add train.txt, val.txt and test.txt split lists beside them.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        label = tfds.features.ClassLabel(names=EUROSAT_CLASS_NAMES)
        if self.builder_config.name == "rgb":
            image_key = "image"
            image = tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        else:
            image_key = "sentinel2"
            num_bands = len(EUROSAT_ALL_BAND_NAMES)
            image = tfds.features.Tensor(
                shape=(IMAGE_SIZE, IMAGE_SIZE, num_bands), dtype=np.float32
            )
        return tfds.core.DatasetInfo(
            builder=self,
            description="EuroSAT Sentinel-2 land-cover images (10 classes).",
            features=tfds.features.FeaturesDict(
                {image_key: image, "label": label, "filename": tfds.features.Text()}
            ),
            supervised_keys=(image_key, "label"),
            homepage="https://github.com/phelber/eurosat",
            citation=_CITATION,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        manual_dir = storage.as_path(dl_manager.manual_dir)
        config = self.builder_config.name
        archive = find_archive(manual_dir, config)
        images = list_archive_images(archive, config)
        assignment = _assign_splits(manual_dir, images)
        self.info.metadata["split_method"] = split_method(manual_dir)
        # TFDS cannot write an empty split (tiny archives, partial split lists): leave it out.
        return {
            split: self._generate_examples(archive, members)
            for split in SPLITS
            if (members := [im for im, s in zip(images, assignment, strict=True) if s == split])
        }

    def _generate_examples(
        self, archive: epath.Path, images: Sequence[tuple[str, str, int]]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        config = self.builder_config.name
        with _open_zip(archive) as zip_file:
            for member, class_name, _ in images:
                data = zip_file.read(member)
                filename = Path(member).name
                if config == "rgb":
                    record = {"image": _decode_jpeg(data, f"{archive}:{member}")}
                else:
                    record = {"sentinel2": _decode_tiff(data, f"{archive}:{member}")}
                record.update(label=class_name, filename=filename)
                yield Path(member).stem, record


def prepare_eurosat(
    path: str | os.PathLike[str],
    config: str = "rgb",
    data_dir: str | os.PathLike[str] | None = None,
) -> EurosatArchive:
    """Prepares :class:`EurosatArchive` from the archives in ``path`` (once).

    The dataset is rebuilt when the split method recorded at preparation (split lists or
    the seeded split) differs from what ``path`` holds now.
    """
    path = storage.as_path(path)
    if not path.is_dir():
        raise ValueError(f"EuroSAT directory not found: {path}")
    find_archive(path, config)  # fail early, naming the expected file
    method = split_method(path)
    builder = EurosatArchive(
        config=config,
        data_dir=str(data_dir if data_dir is not None else default_data_dir(path)),
        file_format="array_record",
    )
    mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    if builder.is_prepared() and builder.info.metadata.get("split_method") != method:
        logging.info("EuroSAT split lists changed in %s: rebuilding the dataset", path)
        mode = tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(path), download_mode=mode)
    )
    return builder


def load_eurosat(
    path: str | os.PathLike[str],
    config: str = "rgb",
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Reads one EuroSAT split into memory.

    Args:
      path: manual directory holding the archives (module docstring), a local path or a
        ``gs://`` URL (:mod:`pimc_jax.storage`).
      config: "rgb" or "all".
      split: "train", "validation" (or "val"), "test", or TFDS split arithmetic such as
        "train+validation".
      data_dir: where the array_record files go; default ``<path>/tfds`` when writable.

    Returns:
      ``images`` (N, 64, 64, C) float32 scaled to [0, 1] (rgb: / 255, all: / 10 000),
      ``labels`` (N,) int32, ``class_names`` (10,), ``band_names`` (C,)
      (:data:`EUROSAT_RGB_BAND_NAMES` or :data:`EUROSAT_ALL_BAND_NAMES`). Images are
      ordered by class, then by their number in the file name.
    """
    split = "validation" if split == "val" else split
    parts = [part.split("[")[0] for part in split.split("+")]
    if not all(part in SPLITS for part in parts):
        raise ValueError(f"EuroSAT split must be one of {SPLITS} (or 'val'), got {split!r}")
    builder = prepare_eurosat(path, config, data_dir)
    empty = [part for part in parts if part not in builder.info.splits]
    if empty:
        raise ValueError(
            f"EuroSAT split {empty[0]!r} of {path} holds no image (its split list is empty or "
            "the archive holds too few images per class)"
        )
    source = builder.as_data_source(split=split)
    image_key = "image" if config == "rgb" else "sentinel2"
    records = list(source.__getitems__(range(len(source))))
    records.sort(key=_record_order)
    num_channels = 3 if config == "rgb" else len(EUROSAT_ALL_BAND_NAMES)
    images = np.zeros((len(records), IMAGE_SIZE, IMAGE_SIZE, num_channels), np.float32)
    for index, record in enumerate(records):
        images[index] = np.asarray(record[image_key], np.float32) / _REFLECTANCE_SCALE[config]
    labels = np.array([record["label"] for record in records], np.int32)
    band_names = EUROSAT_RGB_BAND_NAMES if config == "rgb" else EUROSAT_ALL_BAND_NAMES
    return images, labels, EUROSAT_CLASS_NAMES, band_names


def _record_order(record: Mapping[str, Any]) -> tuple[int, int]:
    filename = record["filename"]
    if isinstance(filename, bytes):
        filename = filename.decode()
    number = re.search(r"_(\d+)\.\w+$", filename)
    return int(record["label"]), int(number.group(1)) if number else -1
