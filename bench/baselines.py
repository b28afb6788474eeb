"""The pixel-classification baselines people would reach for, beside the library's classifier.

Each takes the raw band series ``(N, T, C)`` float (NaN = gap), int labels ``(N,)``, the
row indices to fit on (and, for the neural baseline, a validation part of them) and the
test rows; each returns test-row class probabilities ``(n_test, K)``.

- :func:`forest`: scikit-learn RandomForest (300 trees) on the raw values (``T·C``
  features), gaps filled with the fitting rows' feature mean; :func:`boosted_trees`:
  LightGBM on the same features (gaps left missing, which LightGBM routes on its own).
  Both are the tree models the library's pixel classifier averages with its tower
  (:mod:`pimc_jax.evaluation.trees`), here alone.
- :func:`tempcnn`: TempCNN (Pelletier, Webb, Petitjean 2019, *Temporal Convolutional
  Neural Network for the Classification of Satellite Image Time Series*): three 1-D
  convolutions of 64 filters (kernel 5) with batch normalisation, ReLU and dropout 0.2, a
  256-unit dense layer, softmax; Adam at 1e-3, batch 32, the epoch with the best
  validation accuracy kept. Inputs are the band series standardised with the fitting
  rows' per-band mean and standard deviation, gaps set to 0 (the mean).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pimc_jax.evaluation.trees import series_table, tree_probabilities


def filled_features(bands: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    """``(N, T·C)`` float64 features, NaNs replaced by the fitting rows' feature mean."""
    flat = bands.reshape(bands.shape[0], -1).astype(np.float64)
    with np.errstate(all="ignore"):
        mean = np.nanmean(flat[fit_rows], axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    return np.where(np.isfinite(flat), flat, mean)


def forest(bands, labels, fit_rows, test_rows, num_classes: int, seed: int) -> np.ndarray:
    """RandomForest of 300 trees on the raw band values; test probabilities ``(n, K)``."""
    return _trees("forest", bands, labels, fit_rows, test_rows, num_classes, seed)


def boosted_trees(bands, labels, fit_rows, test_rows, num_classes: int, seed: int) -> np.ndarray:
    """LightGBM on the raw band values (gaps as missing); test probabilities ``(n, K)``."""
    return _trees("lgbm", bands, labels, fit_rows, test_rows, num_classes, seed)


def _trees(name, bands, labels, fit_rows, test_rows, num_classes, seed) -> np.ndarray:
    """The library's own tree models (:mod:`pimc_jax.evaluation.trees`), alone."""
    table = series_table(bands)
    (proba,) = tree_probabilities(
        (name,), table[fit_rows], labels[fit_rows], table[test_rows], num_classes, seed
    )
    return proba


class TempCNN(nn.Module):
    """TempCNN: ``(B, T, C)`` standardised series → ``(B, num_classes)`` logits."""

    num_classes: int
    filters: int = 64
    kernel: int = 5
    hidden: int = 256
    dropout: float = 0.2

    @nn.compact
    def __call__(self, series: jax.Array, train: bool) -> jax.Array:
        x = series
        for _ in range(3):
            x = nn.Conv(self.filters, (self.kernel,), padding="SAME")(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
        x = nn.Dense(self.hidden)(x.reshape(x.shape[0], -1))
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
        return nn.Dense(self.num_classes)(x)


def tempcnn(
    bands,
    labels,
    train_rows,
    val_rows,
    test_rows,
    num_classes: int,
    seed: int,
    *,
    epochs: int = 60,
    batch_size: int = 32,
) -> np.ndarray:
    """Trains :class:`TempCNN` on ``train_rows``, keeps the best epoch on ``val_rows``.

    Returns the test probabilities ``(n, K)`` float of the kept epoch.
    """
    mean = np.nanmean(bands[train_rows], axis=(0, 1))
    std = np.nanstd(bands[train_rows], axis=(0, 1)) + 1e-6
    series = np.nan_to_num((bands - mean) / std).astype(np.float32)
    model = TempCNN(num_classes)
    key = jax.random.key(seed)
    variables = model.init(key, jnp.asarray(series[:2]), train=False)
    tx = optax.adam(1e-3)
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

    @jax.jit
    def step(state, x, y, rng):
        params, stats, opt = state

        def loss_fn(p):
            logits, updates = model.apply(
                {"params": p, "batch_stats": stats},
                x,
                train=True,
                rngs={"dropout": rng},
                mutable=["batch_stats"],
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

        grads, updates = jax.grad(loss_fn, has_aux=True)(params)
        changes, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, changes), updates["batch_stats"], opt

    @jax.jit
    def probabilities(params, stats, x):
        logits = model.apply({"params": params, "batch_stats": stats}, x, train=False)
        return jax.nn.softmax(logits, -1)

    rng = np.random.default_rng(seed)
    x_train, y_train = series[train_rows], labels[train_rows]
    n = train_rows.size
    batch = min(batch_size, n)
    best = (-1.0, None)
    for epoch in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n - batch + 1, batch):  # full batches only: one compile
            rows = order[start : start + batch]
            key, sub = jax.random.split(key)
            state = step(state, x_train[rows], y_train[rows], sub)
        val_probs = np.asarray(probabilities(state[0], state[1], series[val_rows]))
        accuracy = float(np.mean(val_probs.argmax(-1) == labels[val_rows]))
        if accuracy >= best[0]:  # the latest of equal scores
            best = (accuracy, (state[0], state[1]))
        del epoch
    params, stats = best[1]
    return np.asarray(probabilities(params, stats, series[test_rows]), np.float64)
