"""Sen1Floods11's hand-labelled flood chips (Bonafilia et al. 2020), read from the official layout.

The dataset (``gs://sen1floods11``) keeps its 446 hand-labelled chips, 512 × 512 px at
10 m in EPSG:4326, under ``v1.1/``::

    v1.1/data/flood_events/HandLabeled/
        S1Hand/<Event>_<id>_S1Hand.tif        2 bands: VV, VH (float32 dB)
        S2Hand/<Event>_<id>_S2Hand.tif        13 bands B1..B12 with B8A and B10 (L1C × 10 000)
        LabelHand/<Event>_<id>_LabelHand.tif  int16: −1 no data, 0 not water, 1 water
    v1.1/splits/flood_handlabeled/flood_{train,valid,test}_data.csv  "S1 file,label file"

:func:`load_sen1floods11` reads one split as a lazy sequence of :class:`FloodChip` (labels
are read when the split is opened, images when a chip is accessed), with the units the
rest of the library uses: Sentinel-2 as reflectance (digital numbers / 10 000, no-data as
NaN: the files' nodata value, and 0, the L1C no-data number), Sentinel-1 as dB with a
third channel ``VV/VH`` = VV − VH (the ratio in dB, as PASTIS-R stores it), so an
``s1_image`` tower trained on ``("VV", "VH", "VV/VH")`` reads the chips as they are. A
chip whose label holds no valid pixel (all −1) is skipped and counted
(:attr:`FloodChips.num_skipped`), not an error. ``root`` may be the folder holding
``v1.1``, ``v1.1`` itself, or any folder with ``data/flood_events/HandLabeled`` and
``splits/flood_handlabeled`` inside.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from absl import logging

from pimc_jax.data.geotiff import read_raster
from pimc_jax.data.patches import Patch

S1_FILE_BANDS: tuple[str, ...] = ("VV", "VH")
S1_BANDS: tuple[str, ...] = ("VV", "VH", "VV/VH")
S2_BANDS: tuple[str, ...] = (
    "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12",
)  # fmt: skip
S2_SCALE = 10_000.0  # L1C TOA digital numbers per unit of reflectance
S2_NODATA_DN = 0  # the L1C no-data digital number
LABEL_NODATA, NOT_WATER, WATER = -1, 0, 1
CLASS_NAMES: tuple[str, ...] = ("not water", "water")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
HANDLABELED = Path("data", "flood_events", "HandLabeled")
SPLIT_DIR = Path("splits", "flood_handlabeled")


@dataclasses.dataclass(frozen=True)
class FloodChip:
    """One flood chip: Sentinel-1 and Sentinel-2 on the same grid, and its water labels.

    Attributes:
      chip_id: ``<Event>_<id>`` (e.g. ``Ghana_103272``).
      event: the flood event (the file name's first part, a country in Sen1Floods11).
      s1: ``(H, W, 3)`` float32 dB, channels :data:`S1_BANDS` (VV, VH, VV − VH); NaN = no data.
      s2: ``(H, W, C)`` float32 reflectance, channels ``s2_band_names``; NaN = no data.
      labels: ``(H, W)`` int8: −1 no data, 0 not water, 1 water.
      s2_band_names: names of ``s2``'s channels (:data:`S2_BANDS` for the real chips).
      crs / transform: the grid (rasterio's CRS string and affine ``(a, b, c, d, e, f)``).
    """

    chip_id: str
    event: str
    s1: np.ndarray
    s2: np.ndarray
    labels: np.ndarray
    s2_band_names: tuple[str, ...] = S2_BANDS
    crs: str | None = None
    transform: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        shape = self.labels.shape
        if self.s1.shape != (*shape, len(S1_BANDS)):
            raise ValueError(f"chip {self.chip_id}: s1 {self.s1.shape} does not fit labels {shape}")
        if self.s2.shape != (*shape, len(self.s2_band_names)):
            raise ValueError(
                f"chip {self.chip_id}: s2 {self.s2.shape} does not fit labels {shape} and "
                f"{len(self.s2_band_names)} band names"
            )

    @property
    def valid(self) -> np.ndarray:
        """``(H, W)`` bool: pixels with a label (not −1)."""
        return self.labels != LABEL_NODATA

    def to_patch(self, day: int = 0) -> Patch:
        """The chip as a one-date :class:`~pimc_jax.data.patches.Patch` (S2 and S1 on ``day``;
        the files carry no date), labels kept (−1 included)."""
        dates = np.asarray([day], np.int32)
        return Patch(
            bands=self.s2[None],
            dates=dates,
            band_names=self.s2_band_names,
            labels=self.labels.astype(np.int32),
            patch_id=self.chip_id,
            crs=self.crs,
            transform=self.transform,
            s1_bands=self.s1[None],
            s1_dates=dates,
            s1_band_names=S1_BANDS,
        )


def find_layout(root: str | os.PathLike) -> tuple[Path, Path]:
    """``(HandLabeled folder, splits folder)`` under ``root`` (module docstring).

    Raises:
      FileNotFoundError: one line naming what is missing.
    """
    root = Path(root)
    for base in (root / "v1.1", root):
        hand, splits = base / HANDLABELED, base / SPLIT_DIR
        if hand.is_dir() and splits.is_dir():
            return hand, splits
    raise FileNotFoundError(
        f"{root}: no Sen1Floods11 layout (v1.1/{HANDLABELED.as_posix()}/ and "
        f"v1.1/{SPLIT_DIR.as_posix()}/)"
    )


def read_split_csv(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Rows ``(S1 file name, label file name)`` of a split CSV; a header row is skipped."""
    rows = []
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            cells = [cell.strip() for cell in row if cell.strip()]
            if not cells or not cells[0].lower().endswith((".tif", ".tiff")):
                continue  # blank or header
            if len(cells) < 2:
                raise ValueError(f"{path}: row {row} needs an S1 file and a label file")
            rows.append((Path(cells[0]).name, Path(cells[1]).name))
    return rows


def chip_id_of(s1_name: str) -> str:
    """``Ghana_103272_S1Hand.tif`` → ``Ghana_103272``."""
    stem = Path(s1_name).stem
    return stem[: -len("_S1Hand")] if stem.endswith("_S1Hand") else stem


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """``(H, W)`` int8 labels (−1, 0, 1) of a ``LabelHand`` file; anything else is an error."""
    raster = read_raster(path)
    if raster.values.shape[0] != 1:
        raise ValueError(f"{path}: a label file holds 1 band, got {raster.values.shape[0]}")
    labels = raster.values[0]
    unknown = sorted(set(np.unique(labels).tolist()) - {LABEL_NODATA, NOT_WATER, WATER})
    if unknown:
        raise ValueError(f"{path}: label values must be -1, 0 or 1, got also {unknown[:5]}")
    return labels.astype(np.int8)


def read_s1(path: str | os.PathLike) -> tuple[np.ndarray, str | None, tuple[float, ...]]:
    """``(H, W, 3)`` float32 dB (VV, VH, VV − VH; NaN = no data), CRS and transform."""
    raster = read_raster(path)
    if raster.values.shape[0] != len(S1_FILE_BANDS):
        raise ValueError(f"{path}: an S1Hand file holds 2 bands (VV, VH), got {raster.shape}")
    values = raster.values.astype(np.float32)
    values[raster.gaps()] = np.nan
    values[~np.isfinite(values)] = np.nan
    vv, vh = values
    return np.stack([vv, vh, vv - vh], axis=-1), raster.crs, raster.transform


def read_s2(path: str | os.PathLike, band_names: Sequence[str] = S2_BANDS) -> np.ndarray:
    """``(H, W, len(band_names))`` float32 reflectance of an ``S2Hand`` file (DN / 10 000;
    the file's nodata and DN 0 become NaN); ``band_names`` picks bands of :data:`S2_BANDS`."""
    raster = read_raster(path)
    if raster.values.shape[0] != len(S2_BANDS):
        raise ValueError(
            f"{path}: an S2Hand file holds 13 bands {S2_BANDS}, got {raster.values.shape[0]}"
        )
    unknown = [name for name in band_names if name not in S2_BANDS]
    if unknown:
        raise ValueError(f"unknown Sentinel-2 bands {unknown}; the chips hold {S2_BANDS}")
    columns = [S2_BANDS.index(name) for name in band_names]
    gaps = raster.gaps()[columns] | (raster.values[columns] == S2_NODATA_DN)
    values = raster.values[columns].astype(np.float32) / np.float32(S2_SCALE)
    values[gaps] = np.nan
    return values.transpose(1, 2, 0)


class FloodChips(Sequence):
    """One split of Sen1Floods11: a lazy sequence of :class:`FloodChip`.

    Opening it reads every listed chip's labels (small) to leave out the chips without a
    valid label pixel (:attr:`num_skipped`, :attr:`skipped`); indexing reads that chip's
    S1 and S2 files.
    """

    def __init__(
        self, root: str | os.PathLike, split: str, s2_band_names: Sequence[str] = S2_BANDS
    ):
        hand, splits = find_layout(root)
        csv_path = splits / f"flood_{split}_data.csv"
        if not csv_path.is_file():
            raise FileNotFoundError(f"{csv_path}: no such split file (split {split!r})")
        self.split = split
        self.s2_band_names = tuple(s2_band_names)
        self._files: list[tuple[str, Path, Path, Path]] = []
        self.skipped: list[str] = []
        for s1_name, label_name in read_split_csv(csv_path):
            chip_id = chip_id_of(s1_name)
            s1_path = hand / "S1Hand" / s1_name
            s2_path = hand / "S2Hand" / f"{chip_id}_S2Hand.tif"
            label_path = hand / "LabelHand" / label_name
            for path in (s1_path, s2_path, label_path):
                if not path.is_file():
                    raise FileNotFoundError(f"{path}: listed by {csv_path.name} but missing")
            if not np.any(read_labels(label_path) != LABEL_NODATA):
                self.skipped.append(chip_id)
                continue
            self._files.append((chip_id, s1_path, s2_path, label_path))
        if self.skipped:
            logging.warning(
                "Sen1Floods11 %s: skipped %d chip(s) without a valid label pixel: %s",
                split,
                len(self.skipped),
                ", ".join(self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else ""),
            )

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def chip_ids(self) -> list[str]:
        return [files[0] for files in self._files]

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        chip_id, s1_path, s2_path, label_path = self._files[index]
        s1, crs, transform = read_s1(s1_path)
        s2 = read_s2(s2_path, self.s2_band_names)
        labels = read_labels(label_path)
        for name, array in (("S1Hand", s1), ("S2Hand", s2)):
            if array.shape[:2] != labels.shape:
                raise ValueError(
                    f"chip {chip_id}: {name} is {array.shape[:2]} but LabelHand is {labels.shape}"
                )
        return FloodChip(
            chip_id=chip_id,
            event=chip_id.split("_")[0],
            s1=s1,
            s2=s2,
            labels=labels,
            s2_band_names=self.s2_band_names,
            crs=crs,
            transform=transform,
        )


def load_sen1floods11(
    root: str | os.PathLike, split: str, s2_band_names: Sequence[str] = S2_BANDS
) -> FloodChips:
    """The chips of ``split`` (``train``, ``valid``, ``test``, or any ``flood_<split>_data.csv``,
    e.g. ``bolivia``) under ``root``: a lazy :class:`FloodChips` (module docstring)."""
    return FloodChips(root, split, s2_band_names)
