"""The pixel classifiers of ``classify_map``: fitting, class probabilities, saving, loading.

Three kinds (``classifier.model``):

* ``"extra_trees"`` (the default) and ``"forest"``: extremely randomised trees or a
  RandomForest (scikit-learn, ``classifier.trees`` trees) on each pixel's embeddings and,
  with ``classifier.series``, its raw band series beside them (gaps filled with the
  training pixels' mean). With few labels the extra trees are the strongest of the recipes
  measured (``bench/label_efficiency.py``, docs/maps.md). Saved as ``classifier.joblib``
  (a pickle: load only files you wrote yourself).
* ``"linear"``: a standardised multinomial logistic regression on the embeddings alone,
  saved as plain arrays in ``classifier.npz`` and applied with NumPy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from pimc_jax.evaluation.trees import fit_forest, forest_probabilities
from pimc_jax.maps import cog

TREE_MODELS: tuple[str, ...] = ("extra_trees", "forest")
CLASSIFIER_MODELS: tuple[str, ...] = (*TREE_MODELS, "linear")
FILE_NAMES: dict[str, str] = {
    "extra_trees": "classifier.joblib",
    "forest": "classifier.joblib",
    "linear": "classifier.npz",
}


def check_settings(settings: ml_collections.ConfigDict) -> None:
    """ValueError (one line) for a ``classifier`` block that cannot be fitted."""
    if settings.model not in CLASSIFIER_MODELS:
        raise ValueError(
            f"classifier.model must be one of {CLASSIFIER_MODELS}, got {settings.model!r}"
        )
    if settings.model in TREE_MODELS and not int(settings.trees) >= 1:
        raise ValueError(f"classifier.trees must be a positive integer, got {settings.trees!r}")
    series_setting(settings)


def series_setting(settings: ml_collections.ConfigDict) -> str:
    """``classifier.series`` as ``"auto"``, ``"true"`` or ``"false"`` (ValueError, one
    line, for anything else)."""
    setting = str(settings.series).strip().lower()
    if setting not in ("auto", "true", "false"):
        raise ValueError(f"classifier.series must be auto, true or false, got {settings.series!r}")
    return setting


def fit_classifier(
    features: np.ndarray,
    ranks: np.ndarray,
    num_classes: int,
    settings: ml_collections.ConfigDict,
) -> dict[str, Any]:
    """The ``settings.model`` classifier fitted on ``(N, F)`` float features (NaN: a gap,
    filled with the column's training mean) and their ``(N,)`` class ranks; classes absent
    from ``ranks`` are never predicted.

    Returns a dict: ``kind``, ``fill`` (the column means), and for ``"linear"`` the
    standardisation (``mean``, ``scale``) and softmax ``weights`` ``(K, F)`` and ``bias``
    ``(K,)``, for the tree models the fitted scikit-learn ``model``.
    """
    if settings.model in TREE_MODELS:
        extra = settings.model == "extra_trees"
        model, fill = fit_forest(features, ranks, int(settings.seed), int(settings.trees), extra)
        return {"kind": settings.model, "fill": fill, "model": model, "num_classes": num_classes}
    from sklearn.linear_model import LogisticRegression

    with np.errstate(all="ignore"):
        fill = np.nanmean(features, axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = np.where(np.isnan(features), fill, features)

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    weights = np.zeros((num_classes, x.shape[1]))
    bias = np.full(num_classes, -1e9)
    present = np.unique(ranks)
    if present.size == 1:
        bias[present[0]] = 0.0
    else:
        model = LogisticRegression(C=float(settings.l2), max_iter=int(settings.max_iter))
        model.fit((x - mean) / scale, ranks)
        coef, intercept = model.coef_, model.intercept_
        if coef.shape[0] == 1:  # binary: sigmoid(z) = softmax([0, z])
            coef = np.concatenate([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        weights[model.classes_] = coef
        bias[model.classes_] = intercept
    return {
        "kind": "linear", "fill": fill, "mean": mean, "scale": scale, "weights": weights,
        "bias": bias,
    }  # fmt: skip


def probabilities(model: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """``(N, K)`` float32 class probabilities of ``(N, F)`` features (NaN: filled as in
    training); rows sum to 1."""
    if model["kind"] in TREE_MODELS:
        probs = forest_probabilities(
            model["model"], model["fill"], features, int(model["num_classes"])
        )
        return probs.astype(np.float32)
    x = np.where(np.isnan(features), model["fill"], features)
    logits = ((x - model["mean"]) / model["scale"]) @ model["weights"].T + model["bias"]
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def save_classifier(folder: Path, model: dict[str, Any], facts: dict[str, Any]) -> Path:
    """Writes the model and its facts (codes, names, colours, the features it reads, the
    checkpoint) into ``folder`` (``classifier.npz`` or ``classifier.joblib``); returns the
    path."""
    path = Path(folder) / FILE_NAMES[model["kind"]]
    with cog.atomic_write(path) as temporary, open(temporary, "wb") as handle:
        if model["kind"] in TREE_MODELS:
            import joblib

            joblib.dump({"model": model, "facts": facts}, handle, compress=3)
        else:
            arrays = {k: v for k, v in model.items() if k != "kind"}
            np.savez(handle, **arrays, **{k: np.asarray(v) for k, v in facts.items()})
    return path


def load_classifier(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model and facts :func:`save_classifier` wrote (``.npz`` or ``.joblib``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no classifier file {path} (classifier_from)")
    if path.suffix == ".joblib":
        import joblib

        saved = joblib.load(path)
        return saved["model"], dict(saved["facts"])
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    model = {key: arrays.pop(key) for key in ("mean", "scale", "weights", "bias")}
    model["kind"] = "linear"
    model["fill"] = arrays.pop("fill", np.zeros_like(model["mean"]))
    facts = {
        "codes": [int(c) for c in arrays["codes"]],
        "names": [str(n) for n in arrays["names"]],
        "bands": [str(b) for b in arrays["bands"]],
        "checkpoint": str(arrays["checkpoint"]),
        "series": [int(v) for v in arrays.get("series", np.zeros(0))],
    }
    return model, facts
