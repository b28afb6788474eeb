"""Scores of predictions against the truth: confusion matrix, accuracy and F1, RMSE.

Host-side NumPy, independent of the model: :func:`confusion_matrix`,
:func:`classification_metrics` (overall accuracy, macro-F1, per-class precision / recall /
F1 / support) and :func:`rmse` per channel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts: row = true class, column = predicted class."""
    labels = np.asarray(labels, np.int64).ravel()
    predictions = np.asarray(predictions, np.int64).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}), got {values.min()}..{values.max()}"
            )
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def classification_metrics(
    confusion: np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Overall accuracy, macro-F1 and a per-class table from a confusion matrix.

    Per class ``k``: precision = TP / predicted-as-k, recall = TP / support, F1 their
    harmonic mean; each is 0 when its denominator is 0. Macro-F1 averages F1 over the
    classes that occur in the labels or the predictions (scikit-learn's default label
    set), so classes absent from the test split do not count as zeros.

    Returns:
      ``overall_accuracy``, ``macro_f1`` (floats in [0, 1]) and ``per_class``: a list of
      ``{"class", "name", "precision", "recall", "f1", "support"}`` for the classes
      counted in macro-F1.
    """
    confusion = np.asarray(confusion, np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be square (K, K), got {confusion.shape}")
    true_positive = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = np.flatnonzero((support > 0) | (predicted > 0))
    total = confusion.sum()
    names = list(class_names) if class_names is not None else []
    per_class = [
        {
            "class": int(k),
            "name": names[k] if k < len(names) else str(k),
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k in present
    ]
    return {
        "overall_accuracy": float(true_positive.sum() / total) if total else math.nan,
        "macro_f1": float(f1[present].mean()) if present.size else math.nan,
        "per_class": per_class,
    }


def class_iou(confusion: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-class intersection over union of a ``(K, K)`` confusion matrix (row = truth) and
    their mean, the semantic-segmentation metric.

    IoU_k = C_kk / (Σ_j C_kj + Σ_i C_ik − C_kk). Classes that neither occur nor are predicted
    get NaN and stay out of the mean (as in macro-F1, :func:`classification_metrics`).

    Returns:
      ``(K,)`` float64 IoU per class and the mean over the others (NaN when none is left).
    """
    confusion = np.asarray(confusion, np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be square (K, K), got {confusion.shape}")
    hit = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - hit
    with np.errstate(divide="ignore", invalid="ignore"):
        ious = np.where(union > 0, hit / union, np.nan)
    present = np.isfinite(ious)
    return ious, float(ious[present].mean()) if present.any() else math.nan


def rmse(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Root mean squared error per last-axis channel: ``(..., K)`` → ``(K,)`` float64."""
    predictions = np.asarray(predictions, np.float64)
    targets = np.asarray(targets, np.float64)
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {predictions.shape} and targets {targets.shape} differ")
    return np.sqrt(np.mean((predictions - targets) ** 2, axis=tuple(range(predictions.ndim - 1))))
