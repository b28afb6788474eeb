"""Pixel classification with the recurrence-plot (RP) encoder (``eval_pastis_classification``).

Labelled pixels come from SITS patches (``data.name`` ``synthetic`` | ``pastis`` |
``patches``): :func:`pimc_jax.data.sampling.pixel_dataset` draws ``data.pixels_per_patch``
pixels per patch whose class is not in ``exclude_classes`` (PASTIS: background 0 and void
19), and patches are split by fold into ``train_folds`` / ``val_folds`` / ``test_folds``
(default 1–3 / 4 / 5: the classifier is fitted on train, the probe's regulariser is chosen
on val, metrics are reported on test); patches that carry no fold (fold 0 everywhere, as in
a user folder without ``fold``) are split like pixel files, seeded and stratified by
``data.val_fraction`` / ``data.test_fraction``. With ``data.name="npz"`` the labelled pixels of
:func:`pimc_jax.data.user.load_pixel_npz` are split seeded and stratified by class
(``data.val_fraction`` / ``data.test_fraction``), or, with ``data.test_path``, the test
split is that second file.

Metrics on the test split: overall accuracy, macro-F1, per-class precision / recall / F1 /
support; plus the validation accuracy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np

from pimc_jax.data import load_patches
from pimc_jax.data.pipeline import image_statistics
from pimc_jax.data.sampling import pixel_dataset
from pimc_jax.data.splits import stratified_folds, stratified_split
from pimc_jax.encode import encode
from pimc_jax.evaluation import common
from pimc_jax.models import ModelSpec, PIMCParams, init_params

SERIES_KEYS: tuple[str, ...] = ("bands", "dates", "mask")
SPLITS: tuple[str, ...] = ("train", "val", "test")
# One split: ``(N, ...)`` arrays by name (``bands``/``dates``/``mask`` or ``image``, ``labels``).
Split = dict[str, np.ndarray]


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
    """

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    band_names: tuple[str, ...]
    class_names: tuple[str, ...]
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def sizes(self) -> dict[str, int]:
        return {f"num_{name}": int(split["labels"].shape[0]) for name, split in self.items()}

    def items(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        return list(zip(SPLITS, (self.train, self.val, self.test), strict=True))


def _subset(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[rows] for key, value in arrays.items()}


def _class_names(name: str, num_classes: int, given: Sequence[str] | None) -> tuple[str, ...]:
    if given is not None:
        names = tuple(given)
    elif name == "synthetic":
        from pimc_jax.data.synthetic import SYNTHETIC_CLASSES

        names = SYNTHETIC_CLASSES
    elif name == "pastis":
        from pimc_jax.data.pastis import PASTIS_CLASS_NAMES

        names = PASTIS_CLASS_NAMES
    else:
        names = ()
    return tuple(names) + tuple(str(k) for k in range(len(names), num_classes))


def _excluded(
    arrays: dict[str, np.ndarray], exclude_classes: Sequence[int]
) -> dict[str, np.ndarray]:
    keep = ~np.isin(arrays["labels"], np.asarray(list(exclude_classes), np.int64))
    return _subset(arrays, np.flatnonzero(keep))


def _npz_arrays(path: str, require_labels: bool) -> tuple[dict[str, np.ndarray], Any]:
    from pimc_jax.data.user import load_pixel_npz

    pixels = load_pixel_npz(path)
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


def _seeded_split(
    arrays: dict[str, np.ndarray], data: ml_collections.ConfigDict, *, with_test: bool
) -> list[dict[str, np.ndarray]]:
    """Train, val[, test] subsets of ``arrays`` by :func:`seeded_split_rows`."""
    rows = seeded_split_rows(arrays["labels"], data, with_test=with_test)
    return [_subset(arrays, r) for r in rows]


def _npz_splits(
    config: ml_collections.ConfigDict, exclude: Sequence[int], require_labels: bool
) -> tuple[list[dict[str, np.ndarray]], tuple[str, ...], tuple[str, ...] | None]:
    data = config.data
    if not data.get("path"):
        raise ValueError("data.name='npz' needs --config.data.path=FILE.npz")
    arrays, pixels = _npz_arrays(data.path, require_labels)
    arrays = _excluded(arrays, exclude)
    if not data.get("test_path"):
        return _seeded_split(arrays, data, with_test=True), pixels.band_names, pixels.class_names
    test, test_pixels = _npz_arrays(data.test_path, require_labels)
    if test_pixels.band_names != pixels.band_names:
        raise ValueError(
            f"{data.test_path}: band_names {test_pixels.band_names} differ from "
            f"{data.path}: {pixels.band_names}"
        )
    train, val = _seeded_split(arrays, data, with_test=False)
    return [train, val, _excluded(test, exclude)], pixels.band_names, pixels.class_names


def _patch_splits(
    config: ml_collections.ConfigDict, exclude: Sequence[int]
) -> tuple[list[dict[str, np.ndarray]], tuple[str, ...], tuple[float, ...], tuple[float, ...]]:
    data = config.data
    folds = {name: tuple(int(f) for f in config.get(f"{name}_folds", ())) for name in SPLITS}
    if (set(folds["train"]) & set(folds["test"])) or (
        set(folds["val"]) & (set(folds["train"]) | set(folds["test"]))
    ):
        raise ValueError(f"train/val/test folds must be disjoint, got {folds}")
    # Each patch is visited twice (statistics, pixel sampling): no need to hold them all.
    patches = load_patches(data, folds=folds["train"] + folds["val"] + folds["test"], lazy=True)
    image_mean, image_std = image_statistics(patches, tuple(data.image_bands))
    pixels = pixel_dataset(
        patches,
        pixels_per_patch=data.pixels_per_patch,
        max_dates=data.max_dates,
        seed=data.eval_seed,
        exclude_classes=exclude,
    )
    fold = pixels.pop("fold")
    if np.all(fold == 0):  # patches without folds (a user folder)
        splits = _seeded_split(pixels, data, with_test=True)
    else:
        splits = [_subset(pixels, np.flatnonzero(np.isin(fold, folds[n]))) for n in SPLITS]
    return splits, patches[0].band_names, image_mean, image_std


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
        image_mean = (0.0,) * len(data.image_bands)
        image_std = (1.0,) * len(data.image_bands)
    else:
        splits, band_names, image_mean, image_std = _patch_splits(config, exclude)
        given_names = None
    train, val, test = splits
    for name, split in (("train", train), ("test", test)):
        if split["labels"].shape[0] == 0:
            raise ValueError(f"the {name} split of data.name={data.name!r} holds no pixel")
    num_classes = 1 + max(int(s["labels"].max()) for s in splits if s["labels"].size)
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
    )


def random_params(
    config: ml_collections.ConfigDict,
    band_names: Sequence[str],
    image_mean: Sequence[float],
    image_std: Sequence[float],
) -> PIMCParams:
    """The ``init_from=random`` baseline: fresh parameters from ``config.model``/``config.data``."""

    spec = ModelSpec.from_config(
        config,
        band_names=tuple(band_names),
        image_mean=tuple(image_mean),
        image_std=tuple(image_std),
    )
    return init_params(spec, config.seed)


def series_inputs(split: Split) -> dict[str, np.ndarray]:
    """The RP tower's inputs of a split: ``bands``, ``dates``, ``mask``."""
    return {key: split[key] for key in SERIES_KEYS}


def series_features(params: PIMCParams, split: Split, band_names: Sequence[str]) -> np.ndarray:
    """Frozen ``rp_features`` ``(N, F)`` of a split's series."""
    batch = {**series_inputs(split), "band_names": tuple(band_names)}
    return encode(params, batch)["rp_features"]


def classify(
    config: ml_collections.ConfigDict,
    params: PIMCParams,
    tower: str,
    splits: Sequence[dict[str, np.ndarray]],
    num_classes: int,
    *,
    features_fn: Callable[[Split], np.ndarray],
    inputs_fn: Callable[[Split], dict[str, np.ndarray]],
    band_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Runs ``config.protocol`` on (train, val, test) splits; returns predictions.

    Args:
      tower: ``"rp"`` or ``"image"``.
      splits: train, val, test dicts holding ``labels`` and the tower's inputs.
      features_fn: ``split -> (N, F)`` frozen features (linear protocol).
      inputs_fn: ``split -> dict`` of the tower's inputs (fine-tuning).

    Returns:
      ``test_predictions``, ``val_predictions`` and protocol facts (``l2``).
    """
    train, val, test = splits
    if config.protocol == "linear":
        probe = config.linear
        train_x = features_fn(train)
        val_x = features_fn(val) if val["labels"].size else np.zeros((0, train_x.shape[1]))
        return common.logistic_probe(
            (train_x, train["labels"]),
            (val_x, val["labels"]),
            features_fn(test),
            num_classes,
            l2_grid=tuple(probe.l2_grid),
            steps=probe.steps,
        )
    if config.protocol != "finetune":
        raise ValueError(
            f"config.protocol must be one of {common.PROTOCOLS}, got {config.protocol!r}"
        )
    forward = common.tower_forward(params.spec, tower, band_names)
    tune = config.finetune
    trained = common.train_supervised(
        forward,
        common.tower_params(params, tower, num_classes),
        inputs_fn(train),
        train["labels"],
        loss="cross_entropy",
        tower=tower,
        class_weights=common.class_weights(
            train["labels"], num_classes, tune.get("class_weighting", "none")
        ),
        augment=common.series_augmentation(config) if tower == "rp" else None,
        validation=(inputs_fn(val), val["labels"]) if val["labels"].size else None,
        score_fn=lambda logits, labels: selection_score(labels, np.argmax(logits, -1), num_classes),
        **common.finetune_settings(config),
    )
    out = {"test_predictions": np.argmax(common.predict(forward, trained, inputs_fn(test)), -1)}
    if val["labels"].size:
        out["val_predictions"] = np.argmax(common.predict(forward, trained, inputs_fn(val)), -1)
    return out


def selection_score(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """Validation score for model selection: the mean of overall accuracy and macro-F1.

    Accuracy alone favours the majority class of an imbalanced set; macro-F1 alone is
    noisy on small validation splits; their mean keeps both in view.
    """
    confusion = common.confusion_matrix(labels, predictions, num_classes)
    scores = common.classification_metrics(confusion)
    return 0.5 * (scores["overall_accuracy"] + scores["macro_f1"])


def classification_results(
    outputs: dict[str, Any],
    splits: Sequence[dict[str, np.ndarray]],
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Test metrics and per-class table (plus val accuracy) from :func:`classify` outputs."""
    _, val, test = splits
    num_classes = len(class_names)
    scores = common.classification_metrics(
        common.confusion_matrix(test["labels"], outputs["test_predictions"], num_classes),
        class_names,
    )
    metrics = {"overall_accuracy": scores["overall_accuracy"], "macro_f1": scores["macro_f1"]}
    if val["labels"].size and "val_predictions" in outputs:
        metrics["val_accuracy"] = float(np.mean(outputs["val_predictions"] == val["labels"]))
    if "l2" in outputs:
        metrics["linear_l2"] = outputs["l2"]
    return {"metrics": metrics, "per_class": scores["per_class"]}


class PixelClassification:
    """The ``eval_pastis_classification`` evaluator: loads the pixels once, runs per encoder."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.splits = load_pixel_splits(config)

    def random_params(self) -> PIMCParams:
        s = self.splits
        return random_params(self.config, s.band_names, s.image_mean, s.image_std)

    def run(self, params: PIMCParams) -> dict[str, Any]:
        s = self.splits
        splits = (s.train, s.val, s.test)
        outputs = classify(
            self.config,
            params,
            "rp",
            splits,
            s.num_classes,
            features_fn=lambda split: series_features(params, split, s.band_names),
            inputs_fn=series_inputs,
            band_names=s.band_names,
        )
        results = classification_results(outputs, splits, s.class_names)
        results["data"] = {"name": self.config.data.name, **s.sizes()}
        return results
