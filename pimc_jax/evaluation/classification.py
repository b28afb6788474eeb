"""What the two classification tasks share: run the protocol, score the predictions.

:func:`classify` runs ``config.protocol`` (:mod:`pimc_jax.evaluation.encoders`) on train /
val / test splits of either tower's inputs and returns predictions;
:func:`classification_results` turns them into the test metrics, per-class table and
confusion matrix;
:func:`selection_score` is the validation score fine-tuning selects its step by.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from pimc_jax.data.splits import stratified_folds, subset_rows
from pimc_jax.evaluation.encoders import check_protocol
from pimc_jax.evaluation.finetune import (
    class_weights,
    finetune_settings,
    series_augmentation,
    train_supervised,
)
from pimc_jax.evaluation.priors import prior_corrected
from pimc_jax.evaluation.probes import logistic_probe
from pimc_jax.evaluation.scores import classification_metrics, confusion_matrix
from pimc_jax.evaluation.towers import predict, tower_forward, tower_params
from pimc_jax.evaluation.trees import (
    BLENDS,
    blend_weights,
    parse_trees,
    series_table,
    tree_out_of_fold,
    tree_probabilities,
)
from pimc_jax.models import PIMCParams


def classify(
    config: ml_collections.ConfigDict,
    params: PIMCParams,
    tower: str,
    splits: Sequence[dict[str, np.ndarray]],
    num_classes: int,
    *,
    features_fn: Callable[[dict[str, np.ndarray]], np.ndarray],
    inputs_fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    band_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Runs ``config.protocol`` on (train, val, test) splits; returns predictions.

    Args:
      tower: ``"rp"`` or ``"image"``.
      splits: train, val, test dicts holding ``labels`` and the tower's inputs.
      features_fn: ``split -> (N, F)`` frozen features (linear protocol).
      inputs_fn: ``split -> dict`` of the tower's inputs (fine-tuning).

    Returns:
      ``test_predictions`` (N,) int, ``test_probabilities`` (N, K) float (fine-tuning;
      with ``finetune.trees`` also the tower's own, ``tower_test_probabilities``, and each
      tree model's, ``tree_test_probabilities``; with a cross-fitted ensemble the
      out-of-fold probabilities of the train + val pixels, ``oof_probabilities``, and
      their ``oof_labels``; with trees the ``blend_weights`` used and, with
      ``finetune.blend="oof"`` or a prior correction chosen on them, each tree model's
      out-of-fold probabilities, ``tree_oof_probabilities``, and the blend's,
      ``blend_oof_probabilities``), with ``finetune.prior_correction`` the
      ``prior_exponent`` applied to the test probabilities,
      ``val_predictions`` and protocol facts (``l2``).
    """
    train, val, test = splits
    if config.protocol == "linear":
        probe = config.linear
        train_x = features_fn(train)
        val_x = features_fn(val) if val["labels"].size else np.zeros((0, train_x.shape[1]))
        return logistic_probe(
            (train_x, train["labels"]),
            (val_x, val["labels"]),
            features_fn(test),
            num_classes,
            l2_grid=tuple(probe.l2_grid),
            steps=probe.steps,
        )
    check_protocol(config.protocol)
    forward = tower_forward(params.spec, tower, band_names)
    tune = config.finetune
    settings = finetune_settings(config)
    augment = series_augmentation(config) if tower == "rp" else None  # one for every member

    def fit(
        member: int, rows: dict[str, np.ndarray], held_out: dict[str, np.ndarray], **kwargs: Any
    ) -> Any:
        """Trains on ``rows``, keeping the best step on ``held_out`` (when it has rows)."""
        return train_supervised(
            forward,
            tower_params(params, tower, num_classes),
            inputs_fn(rows),
            rows["labels"],
            loss="cross_entropy",
            tower=tower,
            class_weights=class_weights(
                rows["labels"], num_classes, tune.get("class_weighting", "none")
            ),
            augment=augment,
            validation=(
                (inputs_fn(held_out), held_out["labels"]) if held_out["labels"].size else None
            ),
            score_fn=lambda logits, labels: selection_score(
                labels, np.argmax(logits, -1), num_classes
            ),
            **{**settings, "seed": settings["seed"] + member},
            **kwargs,
        )

    pool_size = train["labels"].shape[0] + val["labels"].shape[0]
    trees = parse_trees(tune.get("trees", "none"), pool_size) if tower == "rp" else ()
    members = tune.get("ensemble_members", 1)
    blend = tune.get("blend", "mean")
    if blend not in BLENDS:
        raise ValueError(f"finetune.blend must be one of {BLENDS}, got {blend!r}")
    if trees and blend == "oof" and members == 1:
        raise ValueError(
            "finetune.blend='oof' chooses its weights on the cross-fitted ensemble's "
            "out-of-fold predictions: set finetune.ensemble_members >= 2 or blend='mean'"
        )
    correction = check_prior_correction(tune.get("prior_correction", "none"))
    if members != 1:
        out = _cross_fitted(config, forward, fit, splits, inputs_fn, num_classes, members)
    else:
        trained = fit(0, train, val)
        probabilities = np.asarray(jax.nn.softmax(predict(forward, trained, inputs_fn(test)), -1))
        out = {
            "test_predictions": np.argmax(probabilities, -1),
            "test_probabilities": probabilities,
        }
        if val["labels"].size:
            out["val_predictions"] = np.argmax(predict(forward, trained, inputs_fn(val)), -1)
    if trees:
        oof = blend == "oof" or (correction == "auto" and "oof_probabilities" in out)
        out = _with_trees(out, trees, splits, num_classes, config.seed, blend, oof)
    if correction != "none":
        out = _with_prior_correction(out, correction, splits, num_classes)
    return out


def check_prior_correction(value: Any) -> str | float:
    """``finetune.prior_correction``: ``"none"``, ``"auto"`` or an exponent ``>= 0`` (a number
    or its text, as ``--config.finetune.prior_correction=0.5`` gives it).

    Raises:
      ValueError: any other value, in one line with the choices.
    """
    if isinstance(value, str) and value.strip() in ("none", "auto"):
        return value.strip()
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, int | float) and not isinstance(number, bool) and 0 <= number < np.inf:
        return float(number)
    raise ValueError(
        f"finetune.prior_correction must be 'auto' (chosen on out-of-fold predictions), "
        f"'none' or an exponent >= 0 such as 0.5, got {value!r}"
    )


def _with_prior_correction(
    out: dict[str, Any],
    correction: str | float,
    splits: Sequence[dict[str, np.ndarray]],
    num_classes: int,
) -> dict[str, Any]:
    """The test probabilities divided by the train + val class prior to the power
    ``correction`` (:mod:`pimc_jax.evaluation.priors`); ``"auto"`` chooses the power on the
    out-of-fold probabilities (of the blend, with trees), and is the identity without them
    (a single fine-tuned model)."""
    train, val, _ = splits
    labels = np.concatenate([train["labels"], val["labels"]])  # the rows of oof_labels
    oof = out.get("blend_oof_probabilities", out.get("oof_probabilities"))
    probabilities, exponent = prior_corrected(
        out["test_probabilities"], labels, num_classes, correction, oof
    )
    if exponent is None:
        return out
    return {
        **out,
        "test_predictions": np.argmax(probabilities, -1),
        "test_probabilities": probabilities,
        "prior_exponent": exponent,
    }


def _with_trees(
    out: dict[str, Any],
    trees: tuple[str, ...],
    splits: Sequence[dict[str, np.ndarray]],
    num_classes: int,
    seed: int,
    blend: str = "mean",
    out_of_fold: bool = False,
) -> dict[str, Any]:
    """``finetune.trees``: the tree models (:mod:`pimc_jax.evaluation.trees`) fitted on the
    train and val pixels, their test probabilities blended with the tower's (``blend``:
    the plain mean, or ``"oof"``: weights chosen on out-of-fold predictions, the trees
    cross-fitted on the ensemble's parts; ``out_of_fold``: cross-fit them for the mean
    too, for a prior correction chosen on the blend's out-of-fold probabilities)."""
    train, val, test = splits
    table = lambda split: series_table(split["bands"], split.get("mask"))  # noqa: E731
    fit_x = np.concatenate([table(train), table(val)])
    fit_y = np.concatenate([train["labels"], val["labels"]])
    models = tree_probabilities(trees, fit_x, fit_y, table(test), num_classes, seed)
    extra: dict[str, Any] = {}
    weights = np.full(1 + len(trees), 1.0 / (1 + len(trees)))
    if blend == "oof" or out_of_fold:  # cross-fitted on the ensemble's parts, as the tower
        oof = tree_out_of_fold(trees, fit_x, fit_y, out["oof_parts"], num_classes, seed)
        if blend == "oof":
            weights = blend_weights([out["oof_probabilities"], *oof], fit_y)
        extra = {
            "tree_oof_probabilities": dict(zip(trees, oof, strict=True)),
            "blend_oof_probabilities": np.tensordot(
                weights, np.stack([out["oof_probabilities"], *oof]), 1
            ),
        }
    probabilities = np.tensordot(weights, np.stack([out["test_probabilities"], *models]), 1)
    return {
        **out,
        **extra,
        "test_predictions": np.argmax(probabilities, -1),
        "test_probabilities": probabilities,
        "tower_test_probabilities": out["test_probabilities"],
        "tree_test_probabilities": dict(zip(trees, models, strict=True)),
        "blend_weights": dict(zip(("tower", *trees), weights.tolist(), strict=True)),
    }


def _cross_fitted(
    config: ml_collections.ConfigDict,
    forward: Callable[..., Any],
    fit: Callable[..., Any],
    splits: Sequence[dict[str, np.ndarray]],
    inputs_fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    num_classes: int,
    members: int,
) -> dict[str, Any]:
    """``finetune.ensemble_members > 1``: a cross-fitted ensemble.

    Train and val are pooled and dealt into ``members`` stratified parts
    (:func:`ensemble_parts`); member ``k`` trains on all parts but ``k`` and keeps its best
    step on part ``k`` (as a single model does on val). The test predictions average the
    members' class probabilities; each train or val pixel is predicted by the member that
    held it out (``oof_probabilities``, pool order: train rows, then val rows). (One shared
    step chosen on the pooled out-of-fold predictions scored lower on the development
    pixels: members stopping at different steps make a better ensemble.)
    """
    train, val, test = splits
    pool = {key: np.concatenate([train[key], val[key]]) for key in train}
    parts = ensemble_parts(pool["labels"], members, config.seed)
    everything = np.arange(pool["labels"].shape[0])
    test_inputs = inputs_fn(test)
    probabilities = np.zeros((test["labels"].shape[0], num_classes), np.float64)
    out_of_fold = np.zeros((everything.size, num_classes), np.float64)
    for member, part in enumerate(parts):
        held_out = subset_rows(pool, part)
        trained = fit(
            member,
            subset_rows(pool, np.setdiff1d(everything, part)),
            held_out,
            name=f"finetune member {member + 1}/{len(parts)}",
        )
        probabilities += jax.nn.softmax(predict(forward, trained, test_inputs), axis=-1)
        out_of_fold[part] = jax.nn.softmax(predict(forward, trained, inputs_fn(held_out)), -1)
    probabilities /= len(parts)
    out = {
        "test_predictions": np.argmax(probabilities, -1),
        "test_probabilities": probabilities,
        "oof_probabilities": out_of_fold,
        "oof_labels": pool["labels"],
        "oof_parts": parts,
    }
    if val["labels"].size:
        out["val_predictions"] = np.argmax(out_of_fold[train["labels"].shape[0] :], -1)
    return out


def ensemble_parts(labels: np.ndarray, members: int, seed: int) -> list[np.ndarray]:
    """The held-out rows of each member of a cross-fitted ensemble (``finetune.ensemble_members``).

    Member ``k`` trains on every row of ``labels`` (train + val pooled) but those of part
    ``k``, on which it selects its step: the seeded stratified ``members``-fold split
    (:func:`~pimc_jax.data.splits.stratified_folds`), so every row is held out once.

    Raises:
      ValueError: ``members < 2`` or fewer than ``2 · members`` rows.
    """
    if isinstance(members, bool) or not isinstance(members, int | np.integer) or members < 2:
        raise ValueError(
            f"finetune.ensemble_members must be an int >= 1 (>= 2 here), got {members!r}"
        )
    if labels.shape[0] < 2 * members:
        raise ValueError(
            f"finetune.ensemble_members={members} needs at least {2 * members} train + val "
            f"rows, got {labels.shape[0]}"
        )
    return stratified_folds(labels, members, seed)


def selection_score(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """Validation score for model selection: the mean of overall accuracy and macro-F1.

    Accuracy alone favours the majority class of an imbalanced set; macro-F1 alone is
    noisy on small validation splits; their mean keeps both in view.
    """
    confusion = confusion_matrix(labels, predictions, num_classes)
    scores = classification_metrics(confusion)
    return 0.5 * (scores["overall_accuracy"] + scores["macro_f1"])


def classification_results(
    outputs: dict[str, Any],
    splits: Sequence[dict[str, np.ndarray]],
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Test metrics, per-class table (plus val accuracy) from :func:`classify` outputs.

    Returns:
      ``metrics``, ``per_class``, ``confusion_matrix`` (``K × K`` test-split counts as
      nested lists, row = true class, column = predicted) and ``class_names`` (``K``).
    """
    _, val, test = splits
    num_classes = len(class_names)
    confusion = confusion_matrix(test["labels"], outputs["test_predictions"], num_classes)
    scores = classification_metrics(confusion, class_names)
    metrics = {"overall_accuracy": scores["overall_accuracy"], "macro_f1": scores["macro_f1"]}
    if val["labels"].size and "val_predictions" in outputs:
        metrics["val_accuracy"] = float(np.mean(outputs["val_predictions"] == val["labels"]))
    if "l2" in outputs:
        metrics["linear_l2"] = outputs["l2"]
    return {
        "metrics": metrics,
        "per_class": scores["per_class"],
        # Drawn as confusion.png (pimc_jax.evaluation.figures); rows true, columns predicted.
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
    }
