"""Linear probes on frozen features: the ``linear`` protocol's classifiers and regressors.

Features are standardised with the training split's statistics (:func:`standardize`);
classification fits multinomial logistic regression by full-batch L-BFGS
(:func:`logistic_probe`, optax), regression closed-form ridge (:func:`ridge_probe`). Each
fits one model per L2 strength of a grid and keeps the best on the validation split.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Standardises ``(N, F)`` features with the mean/std of ``train`` (zero std → 1).

    Returns:
      ``[train, *others]`` standardised, float32.
    """
    train = np.asarray(train, np.float64)
    chex.assert_rank(train, 2)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return [((np.asarray(x, np.float64) - mean) / std).astype(np.float32) for x in (train, *others)]


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_logistic(
    features: jax.Array, labels: jax.Array, l2: jax.Array, *, num_classes: int, steps: int
) -> tuple[jax.Array, jax.Array]:
    params = (jnp.zeros((features.shape[1], num_classes)), jnp.zeros((num_classes,)))

    def loss_fn(params: tuple[jax.Array, jax.Array]) -> jax.Array:
        weights, bias = params
        logits = features @ weights + bias
        data = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return data + l2 * jnp.sum(weights**2)

    optimizer = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss_fn)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = optimizer.update(
            grad, state, params, value=value, grad=grad, value_fn=loss_fn
        )
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return params


def fit_logistic_regression(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    l2: float,
    steps: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch L-BFGS (``optax.lbfgs``).

    Minimises ``mean softmax cross-entropy + l2 · ||W||²`` (bias unpenalised) from zero:
    scikit-learn's ``LogisticRegression(C=1 / (2 · N · l2))`` objective.

    Args:
      features: ``(N, F)`` float (standardise them first).
      labels: ``(N,)`` int in ``[0, num_classes)``.
      steps: L-BFGS iterations.

    Returns:
      ``weights`` ``(F, K)`` and ``bias`` ``(K,)`` float32.
    """
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels, np.int32)
    chex.assert_rank(features, 2)
    chex.assert_shape(labels, (features.shape[0],))
    if features.shape[0] == 0:
        raise ValueError("cannot fit a classifier on an empty training set")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    weights, bias = _fit_logistic(
        features, labels, jnp.float32(l2), num_classes=int(num_classes), steps=int(steps)
    )
    return np.asarray(weights), np.asarray(bias)


def _chosen_l2(l2_grid: Sequence[float], scores: Sequence[float]) -> int:
    """Index of the best (highest) score; the grid's middle when there is no validation data."""
    if not scores:
        return len(l2_grid) // 2
    return int(np.argmax(scores))


def logistic_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test_features: np.ndarray,
    num_classes: int,
    *,
    l2_grid: Sequence[float],
    steps: int,
) -> dict[str, Any]:
    """Linear classification probe: standardise, fit per L2 value, keep the best on ``val``.

    Args:
      train / val: ``(features (N, F), labels (N,))``; ``val`` may be empty, then the
        middle of ``l2_grid`` is used.
      test_features: ``(M, F)``.

    Returns:
      ``test_predictions`` ``(M,)`` int, ``val_predictions``, ``l2`` (chosen) and
      ``val_accuracy`` (NaN without validation data).
    """
    if not l2_grid:
        raise ValueError("linear.l2_grid must hold at least one value")
    train_x, val_x, test_x = standardize(train[0], val[0], test_features)
    fits = [
        fit_logistic_regression(train_x, train[1], num_classes, l2=l2, steps=steps)
        for l2 in l2_grid
    ]
    has_val = len(val[1]) > 0
    scores = (
        [float(np.mean(np.argmax(val_x @ w + b, -1) == val[1])) for w, b in fits] if has_val else []
    )
    best = _chosen_l2(l2_grid, scores)
    weights, bias = fits[best]
    return {
        "test_predictions": np.argmax(test_x @ weights + bias, axis=-1),
        "val_predictions": np.argmax(val_x @ weights + bias, axis=-1),
        "l2": float(l2_grid[best]),
        "val_accuracy": scores[best] if has_val else math.nan,
    }


def fit_ridge(
    features: np.ndarray, targets: np.ndarray, l2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge regression with an unpenalised intercept.

    Minimises ``(1/N) ||X W + b − Y||² + l2 ||W||²``:
    ``W = (X̃ᵀX̃/N + l2 I)⁻¹ X̃ᵀỸ/N`` on centred ``X̃, Ỹ``, ``b = ȳ − x̄ W`` (float64).

    Args:
      features: ``(N, F)``; targets: ``(N, O)``.

    Returns:
      ``weights`` ``(F, O)`` and ``bias`` ``(O,)`` float64.
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(targets, np.float64)
    chex.assert_rank([x, y], 2)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"ridge needs matching non-empty features {x.shape} and targets {y.shape}")
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    n = x.shape[0]
    gram = xc.T @ xc / n + l2 * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, xc.T @ yc / n)
    return weights, y_mean - x_mean @ weights


def ridge_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test_features: np.ndarray,
    *,
    l2_grid: Sequence[float],
) -> dict[str, Any]:
    """Linear regression probe: standardise, ridge per L2 value, keep the best val MSE.

    Returns:
      ``test_predictions`` ``(M, O)`` float32, ``l2`` and ``val_rmse`` (NaN without val data).
    """
    if not l2_grid:
        raise ValueError("linear.l2_grid must hold at least one value")
    train_x, val_x, test_x = standardize(train[0], val[0], test_features)
    fits = [fit_ridge(train_x, train[1], l2) for l2 in l2_grid]
    has_val = len(val[1]) > 0
    val_mse = [float(np.mean((val_x @ w + b - val[1]) ** 2)) for w, b in fits] if has_val else []
    best = _chosen_l2(l2_grid, [-m for m in val_mse])
    weights, bias = fits[best]
    return {
        "test_predictions": (test_x @ weights + bias).astype(np.float32),
        "l2": float(l2_grid[best]),
        "val_rmse": math.sqrt(val_mse[best]) if has_val else math.nan,
    }
