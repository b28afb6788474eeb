"""Labelled pixel series for the pixel-level evaluations, split for train, val and test.

Labelled pixels come from SITS patches (``data.name`` ``synthetic`` | ``pastis`` |
``patches``): :func:`pixel_dataset` draws ``data.pixels_per_patch`` pixels per patch whose
class is not in the excluded classes (:func:`excluded_classes`; PASTIS: background 0 and
void 19), and patches are split by fold into ``train_folds`` / ``val_folds`` /
``test_folds`` (default 1–3 / 4 / 5: the model is fitted on train, selected on val and
scored on test); patches that carry no fold (fold 0 everywhere, as in a user folder
without ``fold``) are split by spatial blocks (:func:`block_split_rows`: whole
``data.block_size`` tiles to train, val or test, so test pixels do not sit beside
training pixels of the same field; ``block_size=0`` splits pixels like pixel files).
With ``data.name="npz"`` the labelled pixels of :func:`pimc_jax.data.user.load_pixel_npz`
are split seeded and stratified by class (:func:`seeded_split_rows`: ``data.val_fraction``
/ ``data.test_fraction``, or fold ``data.cv_fold`` of ``data.cv_folds``), or, with
``data.test_path``, the test split is that second file. :func:`load_pixel_splits`
returns the three splits as :class:`PixelSplits`; :func:`series_features` gives their
frozen RP-tower features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from pimc_jax.data import load_patches
from pimc_jax.data.classes import PASTIS_CLASS_NAMES, SYNTHETIC_CLASS_NAMES
from pimc_jax.data.patches import Patch
from pimc_jax.data.radar import check_s1_setting, pixel_s1_series
from pimc_jax.data.splits import stratified_folds, stratified_split, subset_rows
from pimc_jax.data.statistics import image_statistics, s1_spec_facts
from pimc_jax.data.user import (
    DEFAULT_SCL_INVALID_CLASSES,
    MAX_CLASSES,
    load_pixel_npz,
    read_class_table,
)
from pimc_jax.data.views import check_views, pad_series
from pimc_jax.evaluation.towers import frozen_features, plot_tower
from pimc_jax.indices import resolve_image_bands
from pimc_jax.models import PIMCParams

SERIES_KEYS: tuple[str, ...] = ("bands", "dates", "mask")
S1_SERIES_KEYS: tuple[str, ...] = ("s1_bands", "s1_dates", "s1_mask")
SPLITS: tuple[str, ...] = ("train", "val", "test")
# One split: ``(N, ...)`` arrays by name (``bands``/``dates``/``mask`` or ``image``, ``labels``).
Split = dict[str, np.ndarray]


def pixel_dataset(
    patches: Sequence[Patch],
    *,
    pixels_per_patch: int,
    max_dates: int,
    seed: int = 0,
    exclude_classes: Sequence[int] = (),
    s1: bool = False,
    s1_multilook: int = 1,
    block_size: int = 16,
) -> dict[str, np.ndarray]:
    """Labelled pixels drawn from each patch, for the pixel-level evaluations.

    From every patch, ``min(pixels_per_patch, #eligible)`` pixels are drawn uniformly
    without replacement among the pixels whose label is not in ``exclude_classes``
    (PASTIS convention: exclude background 0 and void 19; synthetic data: background 0).

    Returns:
      dict with ``bands`` ``(N, T, C)`` float32, ``dates`` ``(N, T)`` float32, ``mask``
      ``(N, T)`` bool (see :func:`pad_series`, ``T = max_dates``), ``labels`` ``(N,)``
      int32, ``fold`` ``(N,)`` int32, the fold of each pixel's patch, and ``block``
      ``(N,)`` int64, the ``block_size × block_size`` tile of its patch it lies in (one id
      per patch and tile, for spatially blocked splits). With ``s1``
      also the pixels' Sentinel-1 series ``s1_bands`` ``(N, T, C1)`` float32 dB,
      ``s1_dates`` ``(N, T)``, ``s1_mask`` ``(N, T)``; patches without S1 are then left
      out (logged), so every encoder sees the same pixels. ``s1_multilook``: their
      multilook window (:func:`pimc_jax.data.radar.pixel_s1_series`, as in pre-training).

    Raises:
      ValueError: no patch, a patch without labels, or patches with different bands.
    """
    if not patches:
        raise ValueError("pixel_dataset needs at least one patch")
    rng = np.random.default_rng(seed)
    excluded = np.asarray(list(exclude_classes), dtype=np.int64)
    band_names = patches[0].band_names
    parts = []
    without_s1 = 0
    for index, patch in enumerate(patches):
        if s1 and not patch.has_s1:
            without_s1 += 1
            continue
        if patch.labels is None:
            raise ValueError(f"patch {patch.patch_id!r} has no labels")
        if patch.band_names != band_names:
            raise ValueError(
                f"patch {patch.patch_id!r} has bands {patch.band_names}, expected {band_names}"
            )
        eligible = np.flatnonzero(~np.isin(patch.labels.ravel(), excluded))
        if eligible.size == 0:
            continue
        flat = rng.choice(eligible, size=min(pixels_per_patch, eligible.size), replace=False)
        rows, cols = np.divmod(flat, patch.width)
        series = pad_series(
            np.swapaxes(patch.reflectance(np.s_[:, rows, cols, :]), 0, 1), patch.dates, max_dates
        )
        if s1:
            radar = pad_series(
                pixel_s1_series(patch.s1_bands, rows, cols, patch.s1_band_names, s1_multilook),
                patch.s1_dates,
                max_dates,
            )
            series.update({f"s1_{key}": value for key, value in radar.items()})
        series["labels"] = patch.labels[rows, cols].astype(np.int32)
        series["fold"] = np.full(flat.size, patch.fold, dtype=np.int32)
        tiles_per_row = -(-patch.width // block_size)
        tile = (rows // block_size) * tiles_per_row + cols // block_size
        series["block"] = (np.int64(index) << 32) + tile.astype(np.int64)
        parts.append(series)
    if without_s1:
        logging.warning(
            "%d of %d patches have no Sentinel-1 series; their pixels are left out",
            without_s1,
            len(patches),
        )
    if not parts:
        num_bands = len(band_names)
        return {
            "bands": np.zeros((0, max_dates, num_bands), np.float32),
            "dates": np.zeros((0, max_dates), np.float32),
            "mask": np.zeros((0, max_dates), bool),
            "labels": np.zeros((0,), np.int32),
            "fold": np.zeros((0,), np.int32),
            "block": np.zeros((0,), np.int64),
        }
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


@dataclasses.dataclass(frozen=True)
class PixelSplits:
    """Pixel series split for training, model selection and testing.

    Attributes:
      train / val / test: dicts with ``bands`` ``(N, T, C)`` float32 reflectance (NaN =
        no-data), ``dates`` ``(N, T)`` float32 days, ``mask`` ``(N, T)`` bool and
        ``labels`` ``(N,)`` int32 (zeros when the source has no labels).
      band_names: names of the ``C`` bands.
      class_names: names of classes ``0..K-1`` (``str(k)`` when the source has none).
      image_mean / image_std: per-band statistics of ``data.image_bands`` over the patches
        (what pre-training would give a fresh model; zeros / ones for pixel files).
      s1_facts: the Sentinel-1 arguments of a fresh model's spec for ``model.views``
        (:func:`pimc_jax.data.statistics.s1_spec_facts`; empty without S1). With
        ``data.s1`` set, the splits also hold ``s1_bands``/``s1_dates``/``s1_mask``.
    """

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    band_names: tuple[str, ...]
    class_names: tuple[str, ...]
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    s1_facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def series_length(self) -> float | None:
        """The median training pixel's number of acquisitions (None without series)."""
        if "mask" not in self.train or not self.train["mask"].shape[0]:
            return None
        return float(np.median(self.train["mask"].sum(axis=1)))

    def sizes(self) -> dict[str, int]:
        return {f"num_{name}": int(split["labels"].shape[0]) for name, split in self.items()}

    def items(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        return list(zip(SPLITS, (self.train, self.val, self.test), strict=True))


def folder_class_names(path: str, num_classes: int) -> tuple[str, ...] | None:
    """Names of classes ``0..num_classes-1`` from a patch folder's ``classes.json``
    (``{"code": "name"}``; codes it does not name keep their number), or None without one.

    Raises:
      ValueError: the file is not such an object.
    """
    table = read_class_table(path)
    if not table:
        return None
    return tuple(table.get(code, str(code)) for code in range(num_classes))


def _class_names(name: str, num_classes: int, given: Sequence[str] | None) -> tuple[str, ...]:
    if given is not None:
        names = tuple(given)
    elif name == "synthetic":
        names = SYNTHETIC_CLASS_NAMES
    elif name == "pastis":
        names = PASTIS_CLASS_NAMES
    else:
        names = ()
    return tuple(names) + tuple(str(k) for k in range(len(names), num_classes))


def class_names_of(config: ml_collections.ConfigDict, num_classes: int) -> tuple[str, ...]:
    """Names of classes ``0..num_classes-1`` of ``config.data``'s source: PASTIS's or the
    synthetic set's, a patch folder's ``classes.json``, else the class numbers."""
    data = config.data
    given = None
    if data.name == "patches" and data.get("path"):
        given = folder_class_names(data.path, num_classes)
    return _class_names(data.name, num_classes, given)


def _excluded(
    arrays: dict[str, np.ndarray], exclude_classes: Sequence[int]
) -> dict[str, np.ndarray]:
    keep = ~np.isin(arrays["labels"], np.asarray(list(exclude_classes), np.int64))
    return subset_rows(arrays, np.flatnonzero(keep))


def _npz_arrays(
    path: str, require_labels: bool, scl_invalid_classes: Sequence[int]
) -> tuple[dict[str, np.ndarray], Any]:
    pixels = load_pixel_npz(path, scl_invalid_classes=tuple(scl_invalid_classes))
    if pixels.labels is None and require_labels:
        raise ValueError(f"{path}: pixel classification needs 'labels' in the .npz file")
    arrays = {"bands": pixels.bands, "dates": pixels.dates, "mask": pixels.mask}
    labels = pixels.labels if pixels.labels is not None else np.zeros(pixels.num_pixels, np.int32)
    arrays["labels"] = labels.astype(np.int32)
    return arrays, pixels


def seeded_split_rows(
    labels: np.ndarray, data: ml_collections.ConfigDict, *, with_test: bool
) -> list[np.ndarray]:
    """Row indices of train, val[, test], seeded and stratified by class.

    With ``data.cv_folds = F > 1`` the test split is fold ``data.cv_fold`` of
    :func:`stratified_folds`; otherwise it takes ``data.test_fraction`` of each class. Val
    then takes ``data.val_fraction`` of each class of the rest (:func:`stratified_split`).
    """
    labels = np.asarray(labels)
    seed = data.eval_seed
    val_fraction = float(data.get("val_fraction", 0.2))
    num_folds = int(data.get("cv_folds", 0))
    if with_test and num_folds > 1:
        fold = int(data.get("cv_fold", 0))
        if not 0 <= fold < num_folds:
            raise ValueError(f"data.cv_fold must be in [0, {num_folds}), got {fold}")
        test_rows = stratified_folds(labels, num_folds, seed)[fold]
        rest = np.setdiff1d(np.arange(labels.shape[0]), test_rows)
        val_part, train_part = stratified_split(labels[rest], [val_fraction], seed)
        return [rest[train_part], rest[val_part], test_rows]
    fractions = [val_fraction]
    if with_test:
        fractions.append(float(data.get("test_fraction", 0.2)))
    *held_out, train_rows = stratified_split(labels, fractions, seed)
    return [train_rows, *held_out]


def block_split_rows(
    blocks: np.ndarray, labels: np.ndarray, data: ml_collections.ConfigDict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, val and test rows with whole spatial blocks in each split.

    The blocks are shuffled (``data.eval_seed``) and dealt out until val holds about
    ``data.val_fraction`` and test ``data.test_fraction`` of the pixels; train takes the
    rest. So no test pixel shares a ``data.block_size`` tile with a training pixel (pixels
    of one field mostly do), unlike a per-pixel split. A class missing from train is named
    in a warning.
    """
    rng = np.random.default_rng(int(data.get("eval_seed", 0)))
    unique, inverse, counts = np.unique(blocks, return_inverse=True, return_counts=True)
    order = rng.permutation(unique.size)
    cumulative = np.cumsum(counts[order]) / max(blocks.size, 1)
    val_end = float(data.get("val_fraction", 0.2))
    test_end = val_end + float(data.get("test_fraction", 0.2))
    split_of = np.empty(unique.size, np.int64)  # 0 train, 1 val, 2 test
    split_of[order] = np.where(cumulative <= val_end, 1, np.where(cumulative <= test_end, 2, 0))
    # With few blocks the first ones may overshoot: val and test get at least one block each.
    for split, position in ((1, 0), (2, 1)):
        if not np.any(split_of == split) and unique.size > 2:
            split_of[order[position]] = split
    pixel_split = split_of[inverse]
    rows = tuple(np.flatnonzero(pixel_split == s) for s in (0, 1, 2))
    missing = sorted(set(np.unique(labels).tolist()) - set(np.unique(labels[rows[0]]).tolist()))
    if missing:
        logging.warning(
            "Spatially blocked split (data.block_size=%s): classes %s have no training pixel",
            data.get("block_size", 16),
            missing,
        )
    return rows


def _seeded_split(
    arrays: dict[str, np.ndarray], data: ml_collections.ConfigDict, *, with_test: bool
) -> list[dict[str, np.ndarray]]:
    """Train, val[, test] subsets of ``arrays`` by :func:`seeded_split_rows`."""
    rows = seeded_split_rows(arrays["labels"], data, with_test=with_test)
    return [subset_rows(arrays, r) for r in rows]


def _npz_splits(
    config: ml_collections.ConfigDict, exclude: Sequence[int], require_labels: bool
) -> tuple[list[dict[str, np.ndarray]], tuple[str, ...], tuple[str, ...] | None]:
    data = config.data
    if not data.get("path"):
        raise ValueError("data.name='npz' needs --config.data.path=FILE.npz")
    scl = data.get("scl_invalid_classes", DEFAULT_SCL_INVALID_CLASSES)
    arrays, pixels = _npz_arrays(data.path, require_labels, scl)
    arrays = _excluded(arrays, exclude)
    if not data.get("test_path"):
        return _seeded_split(arrays, data, with_test=True), pixels.band_names, pixels.class_names
    test, test_pixels = _npz_arrays(data.test_path, require_labels, scl)
    if test_pixels.band_names != pixels.band_names:
        raise ValueError(
            f"{data.test_path}: band_names {test_pixels.band_names} differ from "
            f"{data.path}: {pixels.band_names}"
        )
    train, val = _seeded_split(arrays, data, with_test=False)
    return [train, val, _excluded(test, exclude)], pixels.band_names, pixels.class_names


def _patch_splits(
    config: ml_collections.ConfigDict, exclude: Sequence[int]
) -> tuple[
    list[dict[str, np.ndarray]],
    tuple[str, ...],
    tuple[float, ...],
    tuple[float, ...],
    dict[str, Any],
]:
    data = config.data
    folds = {name: tuple(int(f) for f in config.get(f"{name}_folds", ())) for name in SPLITS}
    if (set(folds["train"]) & set(folds["test"])) or (
        set(folds["val"]) & (set(folds["train"]) | set(folds["test"]))
    ):
        raise ValueError(f"train/val/test folds must be disjoint, got {folds}")
    # Each patch is visited twice (statistics, pixel sampling): no need to hold them all.
    patches = load_patches(data, folds=folds["train"] + folds["val"] + folds["test"], lazy=True)
    image_bands = resolve_image_bands(data.image_bands, patches[0].band_names)
    image_mean, image_std = image_statistics(patches, image_bands)
    s1 = check_s1_setting(data.get("s1", "none")) is not None
    s1_facts: dict[str, Any] = {}
    if s1:
        views = check_views(config.model.get("views", ("s2_rp", "s2_image")), "model.views")
        s1_facts = s1_spec_facts(patches, views, tuple(data.get("s1_image_bands", ())))
    block_size = int(data.get("block_size", 16))
    pixels = pixel_dataset(
        patches,
        pixels_per_patch=data.pixels_per_patch,
        max_dates=data.max_dates,
        seed=data.eval_seed,
        exclude_classes=exclude,
        s1=s1,
        s1_multilook=data.get("s1_multilook", 1),
        block_size=max(block_size, 1),
    )
    fold = pixels.pop("fold")
    block = pixels.pop("block")
    if np.all(fold == 0):  # patches without folds (a user folder): spatial blocks
        num_blocks = np.unique(block).size
        if block_size > 0 and num_blocks >= 3:
            rows = block_split_rows(block, pixels["labels"], data)
            splits = [subset_rows(pixels, r) for r in rows]
        else:
            if block_size > 0:
                logging.warning(
                    "Only %d spatial blocks of data.block_size=%s px: the pixels are split one "
                    "by one instead (neighbours of test pixels may be in train); a smaller "
                    "data.block_size keeps blocks",
                    num_blocks,
                    block_size,
                )
            splits = _seeded_split(pixels, data, with_test=True)
    else:
        splits = [subset_rows(pixels, np.flatnonzero(np.isin(fold, folds[n]))) for n in SPLITS]
    return splits, patches[0].band_names, image_mean, image_std, s1_facts


def excluded_classes(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """Classes left out: ``exclude_classes``, else PASTIS's convention for PASTIS-like sources.

    Labels of the user's own files (``npz``, ``patches``) are the user's: nothing is left
    out unless ``exclude_classes`` says so.
    """
    given = config.get("exclude_classes")
    if given is not None:
        return tuple(int(k) for k in given)
    if config.data.name in ("pastis", "synthetic"):
        return tuple(int(k) for k in config.get("pastis_exclude_classes", ()))
    return ()


def _check_label_range(splits: Sequence[Split], data: ml_collections.ConfigDict) -> None:
    """Labels must be class indices in ``0..MAX_CLASSES-1``: the class count is the largest
    label plus one, and sizes the evaluation's outputs."""
    for split in splits:
        labels = split["labels"]
        if not labels.size:
            continue
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= MAX_CLASSES:
            bad = low if low < 0 else high
            source = data.path or f"data.name={data.name!r}"
            raise ValueError(
                f"{source}: label {bad} is out of range: labels are class indices in "
                f"0..{MAX_CLASSES - 1}"
            )


def load_pixel_splits(
    config: ml_collections.ConfigDict, *, require_labels: bool = True
) -> PixelSplits:
    """Loads and splits the labelled pixels ``config.data`` names (module docstring).

    Raises:
      ValueError: unknown source, missing labels, an empty train or test split, or
        folds that overlap.
    """
    data = config.data
    exclude = excluded_classes(config)
    if data.name == "npz":
        splits, band_names, given_names = _npz_splits(config, exclude, require_labels)
        # Pixel files hold no images; the image tower is unused here anyway.
        image_count = len(resolve_image_bands(data.image_bands, band_names))
        image_mean, image_std = (0.0,) * image_count, (1.0,) * image_count
    else:
        splits, band_names, image_mean, image_std, s1_facts = _patch_splits(config, exclude)
        given_names = None
    train, val, test = splits
    for name, split in (("train", train), ("test", test)):
        if split["labels"].shape[0] == 0:
            raise ValueError(f"the {name} split of data.name={data.name!r} holds no pixel")
    _check_label_range(splits, data)
    num_classes = 1 + max(int(s["labels"].max()) for s in splits if s["labels"].size)
    if data.name == "patches" and given_names is None:
        given_names = folder_class_names(data.path, num_classes)
    if given_names is not None:
        num_classes = max(num_classes, len(given_names))
    return PixelSplits(
        train=train,
        val=val,
        test=test,
        band_names=tuple(band_names),
        class_names=_class_names(data.name, num_classes, given_names),
        image_mean=tuple(image_mean),
        image_std=tuple(image_std),
        s1_facts=s1_facts if data.name != "npz" else {},
    )


def series_inputs(split: Split) -> dict[str, np.ndarray]:
    """A plot tower's inputs of a split: ``bands``, ``dates``, ``mask`` (and ``s1_bands``,
    ``s1_dates``, ``s1_mask`` when the split holds Sentinel-1 series)."""
    return {key: split[key] for key in SERIES_KEYS + S1_SERIES_KEYS if key in split}


def series_features(
    params: PIMCParams, split: Split, band_names: Sequence[str], tower: str | None = None
) -> np.ndarray:
    """Frozen plot-tower backbone features ``(N, F)`` float32 of a split's series.

    ``tower``: default the encoder's first plot tower (:func:`plot_tower`: ``s2_rp`` or
    ``s1_rp``, whichever its views hold first).
    """
    tower = plot_tower(params.spec) if tower is None else tower
    return frozen_features(params, tower, series_inputs(split), band_names)
