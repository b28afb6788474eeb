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

import ml_collections
import numpy as np

from pimc_jax.evaluation.encoders import check_protocol
from pimc_jax.evaluation.finetune import (
    class_weights,
    finetune_settings,
    series_augmentation,
    train_supervised,
)
from pimc_jax.evaluation.probes import logistic_probe
from pimc_jax.evaluation.scores import classification_metrics, confusion_matrix
from pimc_jax.evaluation.towers import predict, tower_forward, tower_params
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
      ``test_predictions``, ``val_predictions`` and protocol facts (``l2``).
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
    trained = train_supervised(
        forward,
        tower_params(params, tower, num_classes),
        inputs_fn(train),
        train["labels"],
        loss="cross_entropy",
        tower=tower,
        class_weights=class_weights(
            train["labels"], num_classes, tune.get("class_weighting", "none")
        ),
        augment=series_augmentation(config) if tower == "rp" else None,
        validation=(inputs_fn(val), val["labels"]) if val["labels"].size else None,
        score_fn=lambda logits, labels: selection_score(labels, np.argmax(logits, -1), num_classes),
        **finetune_settings(config),
    )
    out = {"test_predictions": np.argmax(predict(forward, trained, inputs_fn(test)), -1)}
    if val["labels"].size:
        out["val_predictions"] = np.argmax(predict(forward, trained, inputs_fn(val)), -1)
    return out


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
