"""Land-cover mapping (``eval_landcover``): per-pixel classes from an image tower's dense
features, on labelled SITS patches.

* **Data** (``data.name``): ``synthetic`` (default; the PASTIS-like patches, folds 1..5
  round robin), ``pastis`` (PASTIS / PASTIS-R under ``data.path``: the semantic label
  raster, official folds) or ``patches`` (a folder of your patches with label rasters).
  Patches of ``train_folds`` fit the head, ``val_folds`` choose its L2 (or the fine-tuned
  step), ``test_folds`` are scored (default 1–3 / 4 / 5). Patches without a fold (a user
  folder) are split by spatial blocks of ``data.block_size`` pixels
  (:func:`pimc_jax.evaluation.pixels.block_split_rows`). Classes in
  ``exclude_classes`` (default for PASTIS-like data: void 19) are neither trained on nor
  scored, nor are negative labels. ``data.s1`` must name the Sentinel-1 series for an
  ``s1_image`` tower.
* **Features** (``tower``): ``s2_image`` (the crop of the per-pixel median composite),
  ``s1_image`` (the crop of the S1 acquisition nearest the median S2 date), or ``both``,
  as :func:`pimc_jax.encode.encode_patch` builds them, run densely over each patch
  (:mod:`pimc_jax.segmentation.dense`).
* **Head**: ``protocol=linear`` fits a logistic regression per L2 value on
  ``data.pixels_per_patch`` labelled pixels of each training patch, and keeps the best
  mIoU on val; ``protocol=finetune`` trains the tower and the head on the crops around
  ``finetune.pixels_per_patch`` pixels of each training patch
  (:mod:`pimc_jax.segmentation.heads`).
* **Metrics** over every labelled pixel of the test (and val) patches: overall accuracy,
  macro-F1, mean IoU over the classes present (the semantic-segmentation metric of
  PASTIS), per-class IoU; the same head on the view's raw input channels
  (``*_raw_pixels``) as the reference any encoder has to beat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np

from pimc_jax.data import load_patches
from pimc_jax.data.patches import Patch
from pimc_jax.data.radar import check_s1_setting
from pimc_jax.data.statistics import image_statistics, s1_spec_facts
from pimc_jax.data.views import check_views
from pimc_jax.encode_inputs import patch_image_frame
from pimc_jax.evaluation.encoders import random_encoder
from pimc_jax.evaluation.pixels import block_split_rows, class_names_of, excluded_classes
from pimc_jax.evaluation.scores import class_iou, classification_metrics
from pimc_jax.indices import resolve_image_bands
from pimc_jax.models import PIMCParams
from pimc_jax.segmentation.dense import IMAGE_VIEWS, dense_view_features
from pimc_jax.segmentation.heads import (
    PixelHeads,
    check_settings,
    confusions,
    finetune_view,
    fit_heads,
    sample_pixels,
    view_crops,
)

LANDCOVER_SOURCES: tuple[str, ...] = ("synthetic", "pastis", "patches")
SPLITS: tuple[str, ...] = ("train", "val", "test")
# Features or raw inputs of a patch's pixels for a view: (H, W, F) float32.
FeatureFn = Callable[[Patch], np.ndarray]


def _split_maps(
    labels: Sequence[np.ndarray],
    patch_folds: Sequence[int],
    folds: dict[str, tuple[int, ...]],
    exclude: Sequence[int],
    data: ml_collections.ConfigDict,
) -> list[np.ndarray]:
    """Per patch (its ``(H, W)`` labels and its fold) ``(H, W)`` int8: 0 train, 1 val,
    2 test, −1 unlabelled or excluded."""
    maps = []
    unfolded = []  # (patch index, labelled flat positions) of patches without a fold
    for index, (patch_labels, fold) in enumerate(zip(labels, patch_folds, strict=True)):
        excluded = np.isin(patch_labels, np.asarray(list(exclude), np.int64))
        labelled = (patch_labels >= 0) & ~excluded
        split = np.full(patch_labels.shape, -1, np.int8)
        if fold:
            for code, name in enumerate(SPLITS):
                if fold in folds[name]:
                    split[labelled] = code
        else:
            unfolded.append((index, np.flatnonzero(labelled.ravel())))
        maps.append(split)
    if unfolded:
        block_size = max(int(data.get("block_size", 16)), 1)
        blocks, values = [], []
        for index, flat in unfolded:
            width = labels[index].shape[1]
            rows, cols = np.divmod(flat, width)
            tile = (rows // block_size) * -(-width // block_size) + cols // block_size
            blocks.append((np.int64(index) << 32) + tile)
            values.append(labels[index].ravel()[flat])
        rows_of = block_split_rows(np.concatenate(blocks), np.concatenate(values), data)
        owner = np.concatenate([np.full(f.size, i) for i, f in unfolded])
        flat_all = np.concatenate([f for _, f in unfolded])
        for code, rows in enumerate(rows_of):
            for index in np.unique(owner[rows]):
                mine = rows[owner[rows] == index]
                maps[index].ravel()[flat_all[mine]] = code
    return maps


class LandCoverMapping:
    """The ``eval_landcover`` evaluator: patches and splits read once, ``run(params)`` per
    encoder."""

    def __init__(self, config: ml_collections.ConfigDict):
        data = config.data
        check_settings(config, LANDCOVER_SOURCES)
        self.config = config
        self.s1 = check_s1_setting(data.get("s1", "none")) is not None
        if "s1_image" in self.views and not self.s1:
            raise ValueError(
                "tower reads s1_image but data.s1='none': add --config.data.s1=S1A (PASTIS-R "
                "orbit; S1D or both) or any value but none for synthetic patches"
            )
        folds = {name: tuple(int(f) for f in config.get(f"{name}_folds", ())) for name in SPLITS}
        if len({f for name in SPLITS for f in folds[name]}) != sum(map(len, folds.values())):
            raise ValueError(f"train/val/test folds must be disjoint, got {folds}")
        self.exclude = excluded_classes(config)
        wanted = folds["train"] + folds["val"] + folds["test"]
        self.patches = load_patches(data, folds=wanted, lazy=True)
        # One pass over the patches (a lazy source decodes each one on access).
        labels, patch_folds, without_s1 = [], [], []
        for patch in self.patches:
            if patch.labels is None:
                raise ValueError(f"patch {patch.patch_id!r} has no labels raster")
            labels.append(patch.labels)
            patch_folds.append(patch.fold)
            if not patch.has_s1:
                without_s1.append(patch.patch_id)
        if without_s1 and "s1_image" in self.views:
            raise ValueError(f"patches {without_s1[:3]} hold no Sentinel-1 series")
        self.split_maps = _split_maps(labels, patch_folds, folds, self.exclude, data)
        counts = {
            name: sum(int(np.sum(m == code)) for m in self.split_maps)
            for code, name in enumerate(SPLITS)
        }
        for name in ("train", "test"):
            if counts[name] == 0:
                raise ValueError(
                    f"eval_landcover: the {name} split holds no labelled pixel (folds {folds}, "
                    f"excluded classes {self.exclude})"
                )
        self.pixel_counts = counts
        top = max(
            int(patch_labels[split >= 0].max(initial=0))
            for patch_labels, split in zip(labels, self.split_maps, strict=True)
        )
        self.num_classes = top + 1  # labels are class indices; the largest scored one sizes K
        self.class_names = class_names_of(config, self.num_classes)[: self.num_classes]

    @property
    def views(self) -> tuple[str, ...]:
        return IMAGE_VIEWS if self.config.tower == "both" else (self.config.tower,)

    def random_params(self) -> PIMCParams:
        """Fresh parameters from ``config.model`` (its views must hold the evaluated tower)."""
        config = self.config
        band_names = self.patches[0].band_names
        image_bands = resolve_image_bands(config.data.image_bands, band_names)
        mean, std = image_statistics(self.patches, image_bands)
        s1_facts: dict[str, Any] = {}
        if self.s1:
            views = check_views(config.model.views, "model.views")
            s1_facts = s1_spec_facts(self.patches, views, tuple(config.data.s1_image_bands))
        return random_encoder(config, band_names, mean, std, **s1_facts)

    def _indices(self, split: str) -> list[int]:
        code = SPLITS.index(split)
        return [i for i, m in enumerate(self.split_maps) if np.any(m == code)]

    def _sampled(self, split: str, count: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Seeded ``(patch index, rows, cols)`` of up to ``count`` pixels per patch of ``split``."""
        rng = np.random.default_rng(self.config.data.eval_seed)
        code = SPLITS.index(split)
        return [
            (i, *sample_pixels(rng, self.split_maps[i] == code, count))
            for i in self._indices(split)
        ]

    def _linear_heads(self, features: FeatureFn) -> tuple[PixelHeads, int]:
        """The heads of ``linear.l2_grid`` fitted on ``data.pixels_per_patch`` pixels of each
        training patch; and how many pixels that was."""
        config = self.config
        xs, ys = [], []
        for index, rows, cols in self._sampled("train", config.data.pixels_per_patch):
            patch = self.patches[index]
            xs.append(features(patch)[rows, cols])
            ys.append(patch.labels[rows, cols])
        labels = np.concatenate(ys).astype(np.int32)
        heads = fit_heads(
            np.concatenate(xs),
            labels,
            self.num_classes,
            tuple(config.linear.l2_grid),
            config.linear.steps,
        )
        return heads, int(labels.size)

    def _finetuned(self, params: PIMCParams) -> tuple[PIMCParams, PixelHeads, int]:
        config = self.config
        (view,) = self.views
        count = int(config.finetune.pixels_per_patch)
        sets = []
        for split in ("train", "val"):
            crops, labels = [], []
            for index, rows, cols in self._sampled(split, count):
                patch = self.patches[index]
                image = patch_image_frame(patch, params.spec, view, self._s1_gap())
                crops.append(view_crops(image, rows, cols, params.spec.crop_size))
                labels.append(patch.labels[rows, cols].astype(np.int32))
            sets.append((np.concatenate(crops), np.concatenate(labels)) if crops else None)
        (x, y), validation = sets
        tuned, heads = finetune_view(params, view, x, y, self.num_classes, config, validation)
        return tuned, heads, int(y.size)

    def _s1_gap(self) -> float | None:
        """Any gap: a map needs every patch, so its S1 crop is the acquisition nearest the
        median S2 date however far (pre-training pairs dates within data.s1_max_gap_days)."""
        return None

    def _score(self, features: FeatureFn, heads: PixelHeads) -> dict[str, np.ndarray]:
        """``(G, K, K)`` confusion matrices of every head on val and test."""
        k = self.num_classes
        totals = {}
        for split in ("val", "test"):
            code = SPLITS.index(split)
            total = np.zeros((heads.num_heads, k, k), np.int64)
            for index in self._indices(split):
                patch, where = self.patches[index], self.split_maps[index] == code
                total += confusions(heads.logits(features(patch)[where]), patch.labels[where], k)
            totals[split] = total
        return totals

    def _evaluate(self, features: FeatureFn, heads: PixelHeads) -> dict[str, Any]:
        """Scores ``heads``; keeps the one with the best val mIoU (the middle one without val)."""
        totals = self._score(features, heads)
        val_iou = [class_iou(c)[1] for c in totals["val"]]
        best = int(np.nanargmax(val_iou)) if np.any(np.isfinite(val_iou)) else heads.num_heads // 2
        return {"best": best, "val": totals["val"][best], "test": totals["test"][best]}

    def _features(self, params: PIMCParams) -> FeatureFn:
        tile = int(self.config.data.tile_rows)
        gap = self._s1_gap()
        return lambda patch: np.concatenate(
            [
                dense_view_features(
                    params, view, patch_image_frame(patch, params.spec, view, gap), tile
                )
                for view in self.views
            ],
            axis=-1,
        )

    def _raw(self, params: PIMCParams) -> FeatureFn:
        gap = self._s1_gap()
        return lambda patch: np.concatenate(
            [patch_image_frame(patch, params.spec, view, gap) for view in self.views], axis=-1
        )

    def run(self, params: PIMCParams) -> dict[str, Any]:
        config = self.config
        if config.protocol == "finetune":
            tuned, heads, num_train = self._finetuned(params)
            encoder = self._evaluate(self._features(tuned), heads)
        else:
            features = self._features(params)
            heads, num_train = self._linear_heads(features)
            encoder = self._evaluate(features, heads)
        raw_features = self._raw(params)
        raw = self._evaluate(raw_features, self._linear_heads(raw_features)[0])
        metrics: dict[str, float] = {}
        per_class_iou = {}
        for split in ("val", "test"):
            scores = classification_metrics(encoder[split], self.class_names)
            ious, miou = class_iou(encoder[split])
            metrics[f"overall_accuracy_{split}"] = scores["overall_accuracy"]
            metrics[f"macro_f1_{split}"] = scores["macro_f1"]
            metrics[f"miou_{split}"] = miou
            raw_scores = classification_metrics(raw[split])
            metrics[f"overall_accuracy_{split}_raw_pixels"] = raw_scores["overall_accuracy"]
            metrics[f"miou_{split}_raw_pixels"] = class_iou(raw[split])[1]
            per_class_iou[split] = ious
        if config.protocol == "linear":
            metrics["l2"] = heads.l2[encoder["best"]]
        test_scores = classification_metrics(encoder["test"], self.class_names)
        per_class = [
            {**row, "iou": float(per_class_iou["test"][row["class"]])}
            for row in test_scores["per_class"]
        ]
        return {
            "metrics": metrics,
            "tower": config.tower,
            "views": list(self.views),
            "protocol": config.protocol,
            "confusion_matrix": encoder["test"],
            "class_names": list(self.class_names),
            "per_class": per_class,
            "data": {
                "name": config.data.name,
                "num_patches": {s: len(self._indices(s)) for s in SPLITS},
                "num_pixels": dict(self.pixel_counts),
                "num_train_pixels": int(num_train),
                "excluded_classes": list(self.exclude),
            },
        }
