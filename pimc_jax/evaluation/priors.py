"""Class-prior correction of a classifier's probabilities, its strength chosen on
out-of-fold predictions.

Models fitted on imbalanced labels lean towards the frequent classes: a forest's leaf
votes, a boosted model's and a network's probabilities all carry the training prior. On
a crop-type set where one class holds 61 % of the pixels, the rare classes are then
seldom predicted at all, which costs macro-F1 and, where the models are over-confident in
the majority, accuracy too. Dividing the probabilities by the prior raised to an exponent
``a`` moves the decision towards rarer classes: ``a = 0`` is the plain argmax (best for
accuracy when the probabilities are calibrated), ``a = 1`` the balanced decision.
:func:`prior_exponent` lets the training pixels say how far to go: the ``a`` of a grid
whose decisions on the out-of-fold probabilities score the highest accuracy + macro-F1,
ties going to the smallest. With balanced labels the prior is uniform and every ``a``
gives the same decisions, so the correction is the identity there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pimc_jax.evaluation.scores import classification_metrics, confusion_matrix

EXPONENTS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


def class_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class frequencies of ``labels`` ``(N,)`` int, ``(K,)`` float64 summing to 1; a class
    absent from the labels counts as one pixel, so that no prior is 0."""
    labels = np.asarray(labels, np.int64)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"class_prior needs a non-empty 1-D label array, got {labels.shape}")
    counts = np.maximum(np.bincount(labels, minlength=num_classes)[:num_classes], 1)
    return counts / counts.sum()


def correct_priors(probabilities: np.ndarray, prior: np.ndarray, exponent: float) -> np.ndarray:
    """``probabilities / prior**exponent``, renormalised per row.

    Args:
      probabilities: ``(N, K)`` float class probabilities.
      prior: ``(K,)`` float, every entry > 0 (:func:`class_prior`).
      exponent: ``a ≥ 0``; 0 returns the probabilities unchanged.

    Returns:
      ``(N, K)`` float64 rows summing to 1.
    """
    probabilities = np.asarray(probabilities, np.float64)
    prior = np.asarray(prior, np.float64)
    if probabilities.ndim != 2 or prior.shape != probabilities.shape[1:]:
        raise ValueError(
            f"correct_priors: probabilities {probabilities.shape} (N, K) and prior "
            f"{prior.shape} (K,) do not agree"
        )
    if exponent < 0 or np.any(prior <= 0):
        raise ValueError(f"correct_priors: exponent {exponent} must be >= 0 and every prior > 0")
    scaled = probabilities * prior ** (-float(exponent))
    return scaled / np.maximum(scaled.sum(axis=1, keepdims=True), 1e-300)


def prior_exponent(
    out_of_fold: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    exponents: Sequence[float] = EXPONENTS,
) -> float:
    """The exponent of :func:`correct_priors` whose decisions on out-of-fold probabilities
    score the highest accuracy + macro-F1 (ties: the smallest exponent).

    Args:
      out_of_fold: ``(N, K)`` float, each training pixel's probabilities from a model that
        did not train on it.
      labels: ``(N,)`` int true classes; their frequencies are the prior.
      exponents: the candidates, each ≥ 0.

    Returns:
      The chosen exponent (a float of ``exponents``).
    """
    labels = np.asarray(labels, np.int64)
    out_of_fold = np.asarray(out_of_fold, np.float64)
    if out_of_fold.shape != (labels.shape[0], num_classes):
        raise ValueError(
            f"prior_exponent: out-of-fold probabilities {out_of_fold.shape} should be "
            f"({labels.shape[0]}, {num_classes}) (pixels, classes)"
        )
    prior = class_prior(labels, num_classes)
    best, best_score = 0.0, -np.inf
    for exponent in sorted(float(a) for a in exponents):
        predictions = correct_priors(out_of_fold, prior, exponent).argmax(axis=1)
        metrics = classification_metrics(confusion_matrix(labels, predictions, num_classes))
        score = metrics["overall_accuracy"] + metrics["macro_f1"]
        if score > best_score + 1e-12:
            best, best_score = exponent, score
    return best


def prior_corrected(
    probabilities: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    correction: str | float,
    out_of_fold: np.ndarray | None = None,
) -> tuple[np.ndarray, float | None]:
    """``finetune.prior_correction`` applied: the probabilities divided by the prior of
    ``labels`` to a power, and that power.

    Args:
      probabilities: ``(M, K)`` float test probabilities.
      labels: ``(N,)`` int training labels (the prior), in the rows of ``out_of_fold``.
      correction: ``"none"``, ``"auto"`` (the power :func:`prior_exponent` chooses on
        ``out_of_fold``; nothing without them) or the power itself.
      out_of_fold: ``(N, K)`` float out-of-fold probabilities of the training pixels.

    Returns:
      ``(probabilities, power)``; ``probabilities`` as given and ``None`` when nothing
      was corrected.
    """
    if correction == "none" or (correction == "auto" and out_of_fold is None):
        return probabilities, None
    if correction == "auto":
        exponent = prior_exponent(out_of_fold, labels, num_classes)
    else:
        exponent = float(correction)
    return correct_priors(probabilities, class_prior(labels, num_classes), exponent), exponent
