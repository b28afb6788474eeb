"""Tree ensembles on the raw band series, averaged with the fine-tuned plot tower.

``finetune.trees`` names the tree models (``"forest"``, ``"lgbm"``, both as
``"forest+lgbm"``, ``"auto"`` (both from 100 training pixels on, else the forest) or
``"none"``) that the pixel classifier fits beside its fine-tuned
plot-tower ensemble, on the same training pixels. ``finetune.blend`` says how their test
class probabilities are combined: ``"mean"``, the plain mean of the tower's and each tree
model's, or ``"oof"``, a weighted mean whose weights :func:`blend_weights` chooses on
out-of-fold predictions of the training pixels (the cross-fitted ensemble's parts, the
trees cross-fitted on the same parts), so the data, not a rule, say how much each model
counts. The towers learn the shape of a series
from its recurrence plots; trees split on single dates and bands; on small real label
sets their errors differ, and their average beats each alone (docs/real_pixels.md).

Features are the band values by date position, ``(N, T·C)``: gaps stay missing values for
LightGBM (which routes them) and are filled with the training rows' mean for the forest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# "forest": RandomForest; "lgbm": LightGBM; "extra_trees": extremely randomised trees.
TREE_MODELS: tuple[str, ...] = ("forest", "lgbm", "extra_trees")
AUTO_TREES: tuple[str, ...] = ("forest", "lgbm")
BLENDS: tuple[str, ...] = ("mean", "oof")
# finetune.trees="auto": boosting joins the forest from this many training pixels on; below
# it, LightGBM's leaves (at least 5 pixels each) cannot follow a few dozen pixels.
AUTO_BOOSTING_MIN_PIXELS: int = 100


def parse_trees(value: str, num_pixels: int | None = None) -> tuple[str, ...]:
    """``"forest+lgbm"`` → ``("forest", "lgbm")``; ``"none"`` or ``""`` → ``()``;
    ``"auto"``: ``("forest", "lgbm")`` with at least :data:`AUTO_BOOSTING_MIN_PIXELS`
    training pixels (``num_pixels``; None counts as enough), else ``("forest",)``.

    Raises:
      ValueError: an unknown model name.
    """
    if not isinstance(value, str):
        raise ValueError(f"finetune.trees must be a string such as 'forest+lgbm', got {value!r}")
    if value.strip() == "auto":
        few = num_pixels is not None and num_pixels < AUTO_BOOSTING_MIN_PIXELS
        return ("forest",) if few else AUTO_TREES
    names = tuple(name.strip() for name in value.split("+") if name.strip())
    if names in ((), ("none",)):
        return ()
    unknown = [name for name in names if name not in TREE_MODELS]
    if unknown:
        raise ValueError(
            f"finetune.trees={value!r}: unknown model(s) {unknown}; use 'none', 'auto' or "
            f"'+'-joined names of {TREE_MODELS}"
        )
    return names


def series_table(bands: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(N, T, C)`` band series (and ``(N, T)`` mask, False = padding) → ``(N, T·C)``
    float64 with NaN for gaps and padding."""
    values = np.asarray(bands, np.float64)
    if mask is not None:
        values = np.where(np.asarray(mask, bool)[..., None], values, np.nan)
    return values.reshape(values.shape[0], -1)


def _spread(model, features: np.ndarray, num_classes: int) -> np.ndarray:
    """``predict_proba`` on all ``num_classes`` columns (classes unseen in training: 0)."""
    out = np.zeros((features.shape[0], num_classes))
    if features.shape[0]:
        out[:, np.asarray(model.classes_, int)] = model.predict_proba(features)
    return out


def fit_forest(
    train: np.ndarray, labels: np.ndarray, seed: int, trees: int = 300, extra: bool = False
) -> tuple[Any, np.ndarray]:
    """A RandomForest (``trees`` trees, scikit-learn) on ``(N, F)`` features whose NaN gaps
    are filled with the column's training mean (0 for a column without any value);
    ``extra=True``: extremely randomised trees instead (``ExtraTreesClassifier``: random
    split thresholds, no bootstrap), steadier than the forest with a few labels per class.

    Returns the fitted model and the ``(F,)`` fill, for :func:`forest_probabilities`.
    """
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    with np.errstate(all="ignore"):
        fill = np.nanmean(train, axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    kind = ExtraTreesClassifier if extra else RandomForestClassifier
    model = kind(n_estimators=trees, random_state=seed, n_jobs=-1)
    model.fit(np.where(np.isnan(train), fill, train), labels)
    return model, fill


def forest_probabilities(
    model: Any, fill: np.ndarray, features: np.ndarray, num_classes: int
) -> np.ndarray:
    """``(N, num_classes)`` float64 probabilities of a :func:`fit_forest` model on
    ``(N, F)`` features (gaps filled as in training; classes unseen in training: 0)."""
    return _spread(model, np.where(np.isnan(features), fill, features), num_classes)


def tree_probabilities(
    models: Sequence[str],
    train: np.ndarray,
    labels: np.ndarray,
    test: np.ndarray,
    num_classes: int,
    seed: int,
) -> list[np.ndarray]:
    """Fits each tree model on ``(train, labels)``; their test probabilities.

    Args:
      models: names from :data:`TREE_MODELS`.
      train / test: ``(N, F)`` float features with NaN gaps (:func:`series_table`).
      labels: ``(N,)`` int classes of the training rows.
      seed: the models' random state.

    Returns:
      One ``(len(test), num_classes)`` float64 array per model, rows summing to 1.
    """
    out = []
    for name in models:
        if name in ("forest", "extra_trees"):
            model, fill = fit_forest(train, labels, seed, extra=name == "extra_trees")
            out.append(forest_probabilities(model, fill, test, num_classes))
        elif name == "lgbm":
            import lightgbm

            model = lightgbm.LGBMClassifier(
                n_estimators=300,
                learning_rate=0.05,
                num_leaves=15,
                min_child_samples=5,
                subsample=0.8,
                subsample_freq=1,
                colsample_bytree=0.5,
                random_state=seed,
                verbose=-1,
            )
            model.fit(train, labels)
            out.append(_spread(model, test, num_classes))
        else:
            raise ValueError(f"unknown tree model {name!r}; known: {TREE_MODELS}")
    return out


def tree_out_of_fold(
    models: Sequence[str],
    features: np.ndarray,
    labels: np.ndarray,
    parts: Sequence[np.ndarray],
    num_classes: int,
    seed: int,
) -> list[np.ndarray]:
    """Each tree model's out-of-fold probabilities: part ``k`` of ``features`` predicted by
    the model fitted on every other part (:func:`tree_probabilities`).

    Args:
      features: ``(N, F)`` float with NaN gaps; labels: ``(N,)`` int.
      parts: row indices that partition ``range(N)`` (the cross-fitted ensemble's parts).

    Returns:
      One ``(N, num_classes)`` float64 array per model.
    """
    out = [np.zeros((labels.shape[0], num_classes)) for _ in models]
    everything = np.arange(labels.shape[0])
    for part in parts:
        rest = np.setdiff1d(everything, part)
        fitted = tree_probabilities(
            models, features[rest], labels[rest], features[part], num_classes, seed
        )
        for array, probabilities in zip(out, fitted, strict=True):
            array[part] = probabilities
    return out


def blend_weights(
    out_of_fold: Sequence[np.ndarray], labels: np.ndarray, step: float = 0.1
) -> np.ndarray:
    """Weights of a probability blend, chosen on out-of-fold predictions.

    Every point of the simplex grid of ``step`` (weights ≥ 0 summing to 1) is scored by
    the mean log-likelihood of ``labels`` under the weighted mean of the members'
    probabilities (floored at 1e-6); the best wins, ties going to the point nearest equal
    weights. A proper score: it rewards calibrated probabilities, not only the argmax, so it
    moves smoothly with the weights where accuracy on a few hundred pixels jumps.

    Args:
      out_of_fold: ``M`` arrays ``(N, K)`` float, each member's class probabilities of the
        ``N`` training pixels, every pixel predicted by a model that did not train on it.
      labels: ``(N,)`` int true classes.
      step: grid spacing; ``1 / step`` must be a whole number.

    Returns:
      ``(M,)`` float64 weights summing to 1.

    Raises:
      ValueError: no member, shapes that do not agree, or a ``step`` that does not divide 1.
    """
    if not out_of_fold:
        raise ValueError("blend_weights needs at least one member's probabilities")
    stacked = np.stack([np.asarray(p, np.float64) for p in out_of_fold])  # (M, N, K)
    labels = np.asarray(labels, np.int64)
    if stacked.ndim != 3 or stacked.shape[1] != labels.shape[0]:
        raise ValueError(
            f"blend_weights: probabilities {stacked.shape} (members, pixels, classes) do not "
            f"match {labels.shape[0]} labels"
        )
    parts = round(1.0 / step)
    if parts < 1 or abs(parts * step - 1.0) > 1e-9:
        raise ValueError(f"blend_weights: step={step} must divide 1 (e.g. 0.1, 0.25)")
    members = stacked.shape[0]
    truth = stacked[:, np.arange(labels.size), labels]  # (M, N): each member's p(true class)
    grid = np.array(_compositions(parts, members), np.float64) / parts  # (G, M)
    likelihood = np.log(np.maximum(grid @ truth, 1e-6)).mean(axis=1)  # (G,)
    best = likelihood >= likelihood.max() - 1e-12
    spread = np.abs(grid - 1.0 / members).sum(axis=1)
    return grid[np.flatnonzero(best)[np.argmin(spread[best])]]


def _compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """Every tuple of ``parts`` non-negative ints summing to ``total``."""
    if parts == 1:
        return [(total,)]
    return [
        (first, *rest)
        for first in range(total + 1)
        for rest in _compositions(total - first, parts - 1)
    ]
