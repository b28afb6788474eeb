"""What the downstream evaluations share: the encoder to evaluate, probes, fine-tuning, metrics.

* **Which encoder** (:func:`load_encoder`): ``init_from`` is a pre-training workdir (its
  latest checkpoint), a ``checkpoints/<step>`` directory, or ``"random"``: fresh
  parameters with the spec pre-training would build from the config (the baseline row).
* **Linear probe** on frozen backbone features (``rp_features`` / ``image_features`` of
  :func:`pimc_jax.encode`), standardised with the training split's statistics:
  multinomial logistic regression fitted by L-BFGS (optax; :func:`logistic_probe`) for
  classification, closed-form ridge regression (:func:`ridge_probe`) for regression. The
  L2 strength is picked from a grid on the validation split.
* **Fine-tuning** (:func:`train_supervised`): the whole tower (backbone) plus a zero-initialised
  linear head, AdamW with warmup-cosine, one jitted step; the other tower and the
  projection heads stay frozen. Runs on one device: the evaluation sets are small.
* **Metrics**: :func:`confusion_matrix`, :func:`classification_metrics` (overall accuracy,
  macro-F1, per-class precision/recall/F1/support), :func:`rmse`.
* **Results** (:func:`write_results`): ``results.json`` and ``results.md`` in the eval workdir.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from pimc_jax.checkpoint import load_checkpoint
from pimc_jax.models import PIMC, ModelSpec, PIMCParams
from pimc_jax.optim import adamw, warmup_cosine
from pimc_jax.preprocessing import augment_series, normalize_crops, series_to_plots

PROTOCOLS: tuple[str, ...] = ("linear", "finetune")
TOWERS: tuple[str, ...] = ("rp", "image")
RANDOM_INIT = "random"

# A forward function maps (trainable params, batch of inputs) to (B, outputs) float32.
Forward = Callable[[Any, Mapping[str, jax.Array]], jax.Array]
# An augmentation maps (PRNG key, batch of inputs) to a batch of the same structure.
Augment = Callable[[jax.Array, Mapping[str, jax.Array]], dict[str, jax.Array]]


# --------------------------------------------------------------------------------------
# Which encoder.


@dataclasses.dataclass(frozen=True)
class EncoderSource:
    """Where evaluated parameters came from.

    Attributes:
      init_from: the config value (a path or ``"random"``).
      checkpoint: absolute path of the ``checkpoints/<step>`` directory, or None.
      step: the pre-training step of that checkpoint, or None.
    """

    init_from: str
    checkpoint: str | None = None
    step: int | None = None


def load_encoder(
    init_from: str, random_params: Callable[[], PIMCParams]
) -> tuple[PIMCParams, EncoderSource]:
    """Parameters to evaluate and where they came from.

    Args:
      init_from: ``"random"``, a pre-training workdir (latest checkpoint), its
        ``checkpoints`` directory, or one ``checkpoints/<step>`` directory. Checkpoints
        restore onto any number of devices (they are stored replicated).
      random_params: builds fresh parameters for ``"random"``.
    """
    if not init_from:
        raise ValueError(
            "config.init_from is empty: give a pre-training workdir, a checkpoints/<step> "
            f"directory, or {RANDOM_INIT!r}"
        )
    if init_from == RANDOM_INIT:
        return random_params(), EncoderSource(init_from=RANDOM_INIT)
    params, meta, directory = load_checkpoint(init_from)
    step = int(meta["step"])
    logging.info("Evaluating %s (step %d)", directory, step)
    return params, EncoderSource(init_from=str(init_from), checkpoint=str(directory), step=step)


# --------------------------------------------------------------------------------------
# Linear probes on frozen features.


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


# --------------------------------------------------------------------------------------
# Fine-tuning.


def tower_forward(spec: ModelSpec, tower: str, band_names: Sequence[str] | None = None) -> Forward:
    """Forward function of one PIMC tower (backbone features) plus a linear head.

    Args:
      spec: the model spec.
      tower: ``"rp"`` (batch ``bands`` (B, T, C), ``dates`` (B, T), ``mask`` (B, T);
        preprocessed by :func:`pimc_jax.preprocessing.series_to_plots`) or ``"image"`` (batch
        ``image`` (B, k, k, C) reflectance in ``spec.image_bands`` order; preprocessed by
        :func:`pimc_jax.preprocessing.normalize_crops`).
      band_names: names of the series bands (default ``spec.band_names``).

    Returns:
      ``forward(params, batch) -> (B, O)`` with ``params = {"model": variables,
      "head": {"kernel": (F, O), "bias": (O,)}}`` (see :func:`tower_params`).
    """
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {TOWERS}, got {tower!r}")
    model = PIMC(spec)
    names = tuple(band_names) if band_names is not None else spec.band_names

    def forward(params: Any, batch: Mapping[str, jax.Array]) -> jax.Array:
        if tower == "rp":
            inputs = series_to_plots(spec, batch["bands"], batch["dates"], batch["mask"], names)
            features, _ = model.apply(params["model"], inputs, method=PIMC.encode_rp)
        else:
            inputs = normalize_crops(spec, batch["image"])
            features, _ = model.apply(params["model"], inputs, method=PIMC.encode_image)
        return features @ params["head"]["kernel"] + params["head"]["bias"]

    return forward


def tower_params(params: PIMCParams, tower: str, num_outputs: int) -> dict[str, Any]:
    """Trainable tree for :func:`tower_forward`: the model variables and a zero linear head.

    The head maps the tower's ``widths[-1]`` backbone features to ``num_outputs``.
    """
    encoder = {"rp": params.spec.rp_encoder, "image": params.spec.image_encoder}.get(tower)
    if encoder is None:
        raise ValueError(f"tower must be one of {TOWERS}, got {tower!r}")
    width = encoder.widths[-1]
    return {
        "model": jax.tree.map(jnp.asarray, params.variables),
        "head": {"kernel": jnp.zeros((width, num_outputs)), "bias": jnp.zeros((num_outputs,))},
    }


def _trainable_labels(params: Any, tower: str | None, separate_head: bool = False) -> Any:
    """``"train"`` for the tower's backbone, ``"head"`` (or ``"train"``) for the head,
    ``"freeze"`` for everything else."""
    head_label = "head" if separate_head else "train"

    def label(path: tuple[Any, ...], _: Any) -> str:
        keys = [getattr(entry, "key", None) for entry in path]
        if keys[0] == "head":
            return head_label
        if tower is None or f"{tower}_encoder" in keys[1:3]:
            return "train"
        return "freeze"

    return jax.tree_util.tree_map_with_path(label, params)


CLASS_WEIGHTINGS: tuple[str, ...] = ("none", "sqrt_inverse", "inverse")


def class_weights(labels: np.ndarray, num_classes: int, weighting: str) -> np.ndarray:
    """Per-class loss weights ``(K,)`` float32 from training labels, mean 1 over the samples.

    ``none``: all 1. ``inverse``: ``1 / n_k`` (every class weighs the same in the loss).
    ``sqrt_inverse``: ``1 / √n_k``, halfway (in log scale) between the two. Classes absent
    from ``labels`` get 0.
    """
    if weighting not in CLASS_WEIGHTINGS:
        raise ValueError(f"class weighting must be one of {CLASS_WEIGHTINGS}, got {weighting!r}")
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.float64)
    power = {"none": 0.0, "sqrt_inverse": 0.5, "inverse": 1.0}[weighting]
    weights = np.where(counts > 0, np.maximum(counts, 1.0) ** -power, 0.0)
    # Scaled so that the average weight over the training samples is 1.
    weights *= counts.sum() / max(float((weights * counts).sum()), 1e-12)
    return weights.astype(np.float32)


def finetune_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The :func:`train_supervised` keyword arguments an eval config's ``finetune`` block sets.

    (Class weights and series augmentation depend on the task; the tasks add them.)
    """
    tune = config.finetune
    return dict(
        steps=tune.steps,
        batch_size=tune.batch_size,
        learning_rate=tune.learning_rate,
        head_learning_rate=tune.get("head_learning_rate", None) or None,
        weight_decay=tune.weight_decay,
        warmup_steps=tune.warmup_steps,
        eval_every_steps=tune.get("eval_every_steps", 0),
        seed=config.seed,
        log_every_steps=tune.get("log_every_steps", 0),
    )


def series_augmentation(config: ml_collections.ConfigDict) -> Augment | None:
    """``augment(rng, batch) -> batch`` for band-series batches from ``config.finetune``.

    Uses :func:`pimc_jax.preprocessing.augment_series` with ``finetune.date_dropout``,
    ``date_jitter_days`` and ``noise_std``; None when all are 0.
    """
    tune = config.finetune
    options = dict(
        date_dropout=float(tune.get("date_dropout", 0.0)),
        date_jitter_days=float(tune.get("date_jitter_days", 0.0)),
        noise_std=float(tune.get("noise_std", 0.0)),
    )
    if not any(options.values()):
        return None

    def augment(rng: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        bands, dates, mask = augment_series(
            rng, batch["bands"], batch["dates"], batch["mask"], **options
        )
        return {**batch, "bands": bands, "dates": dates, "mask": mask}

    return augment


def _negative_loss(loss: str, outputs: np.ndarray, targets: np.ndarray) -> float:
    """Minus the mean unweighted ``loss`` of ``(N, O)`` outputs: the default selection score."""
    outputs = np.asarray(outputs, np.float64)
    if loss == "mse":
        return -float(np.mean((outputs - np.reshape(targets, outputs.shape)) ** 2))
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(np.mean(log_probs[np.arange(len(targets)), np.asarray(targets, np.int64)]))


def train_supervised(
    forward: Forward,
    params: Any,
    inputs: Mapping[str, np.ndarray],
    targets: np.ndarray,
    *,
    loss: str,
    steps: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    warmup_steps: int,
    seed: int,
    tower: str | None = None,
    head_learning_rate: float | None = None,
    class_weights: np.ndarray | None = None,
    augment: Augment | None = None,
    validation: tuple[Mapping[str, np.ndarray], np.ndarray] | None = None,
    score_fn: Callable[[np.ndarray, np.ndarray], float] | None = None,
    eval_every_steps: int = 0,
    log_every_steps: int = 0,
    name: str = "finetune",
) -> Any:
    """Trains ``params`` of ``forward`` on ``(inputs, targets)`` with AdamW.

    Learning rate: linear warmup over ``warmup_steps``, then cosine decay to 0 at ``steps``;
    weight decay on rank ≥ 2 leaves only; gradients clipped to global norm 1. Each step
    takes ``batch_size`` rows of a fresh seeded permutation of the training set (epochs
    without replacement). The data lives on the device once; the step gathers its rows,
    augments them (``augment``, keyed by the seed and the step) and updates, all in one
    jitted function.

    Model selection: with ``validation`` and ``eval_every_steps``, the parameters are
    scored on the validation set every ``eval_every_steps`` steps and at the end, by
    ``score_fn(outputs, targets)`` (higher is better; default: minus the loss), and the
    best-scoring parameters are returned (the latest of equal scores).

    Args:
      forward: ``forward(params, batch) -> (B, O)`` (e.g. :func:`tower_forward`).
      params: initial trainable tree.
      inputs: dict of ``(N, ...)`` arrays, the ``batch`` fields ``forward`` reads.
      targets: ``(N,)`` int labels for ``loss="cross_entropy"``, ``(N, O)`` float for
        ``loss="mse"``.
      tower: with :func:`tower_params` trees, ``"rp"``/``"image"`` trains only that tower's
        backbone and the head (the rest stays as it is); None trains everything.
      head_learning_rate: peak learning rate of the ``head`` subtree (default
        ``learning_rate``), e.g. higher than the backbone's for a pre-trained encoder.
      class_weights: ``(K,)`` weights of the cross-entropy terms by target class
        (:func:`class_weights`).
      augment: ``augment(rng, batch) -> batch``, pure and jittable.
      validation: ``(inputs, targets)`` for model selection.

    Returns:
      The trained (or selected) ``params``.

    Raises:
      FloatingPointError: the loss became non-finite.
    """
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
    num = int(np.asarray(targets).shape[0])
    if num == 0:
        raise ValueError(f"{name}: empty training set")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"{name}: steps and batch_size must be >= 1, got {steps}, {batch_size}")
    schedule = lambda peak: warmup_cosine(peak, steps, warmup_steps)
    transforms = {
        "train": adamw(schedule(learning_rate), weight_decay=weight_decay),
        "freeze": optax.set_to_zero(),
    }
    separate_head = head_learning_rate is not None and head_learning_rate != learning_rate
    if separate_head:
        transforms["head"] = adamw(schedule(head_learning_rate), weight_decay=weight_decay)
    optimizer = optax.multi_transform(transforms, _trainable_labels(params, tower, separate_head))
    opt_state = optimizer.init(params)
    data = jax.device_put({key: np.asarray(value) for key, value in inputs.items()})
    labels = jax.device_put(np.asarray(targets))
    weights = None if class_weights is None else jnp.asarray(class_weights, jnp.float32)
    key = jax.random.key(seed)

    def loss_fn(params: Any, batch: Mapping[str, jax.Array], target: jax.Array) -> jax.Array:
        outputs = forward(params, batch)
        if loss == "cross_entropy":
            terms = optax.softmax_cross_entropy_with_integer_labels(outputs, target)
            if weights is None:
                return terms.mean()
            return jnp.sum(terms * weights[target]) / jnp.maximum(weights[target].sum(), 1e-12)
        return jnp.mean((outputs - target.reshape(outputs.shape)) ** 2)

    @jax.jit
    def train_step(params, opt_state, data, labels, rows, step):
        batch = jax.tree.map(lambda x: x[rows], data)
        if augment is not None:
            batch = augment(jax.random.fold_in(key, step), batch)
        value, grads = jax.value_and_grad(loss_fn)(params, batch, labels[rows])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    select = validation is not None and eval_every_steps > 0 and len(validation[1]) > 0
    if select and score_fn is None:
        score_fn = functools.partial(_negative_loss, loss)
    best_score, best_step, best_params = -np.inf, 0, params
    rng = np.random.default_rng(seed)
    order = np.zeros((0,), np.int64)
    for step in range(1, steps + 1):
        while order.size < batch_size:
            order = np.concatenate([order, rng.permutation(num)])
        rows, order = order[:batch_size], order[batch_size:]
        params, opt_state, value = train_step(params, opt_state, data, labels, rows, step)
        if (log_every_steps and step % log_every_steps == 0) or step == steps:
            value = float(value)
            if not np.isfinite(value):
                raise FloatingPointError(f"{name}: loss is {value} at step {step}")
            logging.info("%s step %d/%d loss %.4f", name, step, steps, value)
        if select and (step % eval_every_steps == 0 or step == steps):
            score = float(score_fn(predict(forward, params, validation[0]), validation[1]))
            if score >= best_score:  # arrays are immutable: keeping a reference is enough
                best_score, best_step, best_params = score, step, params
    if select:
        logging.info("%s: kept step %d (validation score %.4f)", name, best_step, best_score)
        return best_params
    return params


def predict(
    forward: Forward, params: Any, inputs: Mapping[str, np.ndarray], batch_size: int = 256
) -> np.ndarray:
    """``forward`` over all rows of ``inputs`` in fixed-size chunks → ``(N, O)`` float32."""
    arrays = {key: np.asarray(value) for key, value in inputs.items()}
    num = next(iter(arrays.values())).shape[0]
    apply = jax.jit(forward)
    outputs = []
    for start in range(0, num, batch_size):
        chunk = {key: value[start : start + batch_size] for key, value in arrays.items()}
        rows = next(iter(chunk.values())).shape[0]
        if rows < batch_size:  # pad with the last row: one compiled shape
            chunk = {
                key: np.concatenate([v, np.repeat(v[-1:], batch_size - rows, axis=0)])
                for key, v in chunk.items()
            }
        outputs.append(np.asarray(apply(params, chunk))[:rows])
    if not outputs:
        raise ValueError("predict needs at least one row")
    return np.concatenate(outputs).astype(np.float32)


# --------------------------------------------------------------------------------------
# Metrics.


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


def rmse(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Root mean squared error per last-axis channel: ``(..., K)`` → ``(K,)`` float64."""
    predictions = np.asarray(predictions, np.float64)
    targets = np.asarray(targets, np.float64)
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {predictions.shape} and targets {targets.shape} differ")
    return np.sqrt(np.mean((predictions - targets) ** 2, axis=tuple(range(predictions.ndim - 1))))


# --------------------------------------------------------------------------------------
# Results.


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def results_markdown(results: Mapping[str, Any]) -> str:
    """The ``results.md`` text: run facts, a metric table, and per-class / per-model tables."""
    lines = [f"# {results.get('task', 'evaluation')}", ""]
    for key in ("init_from", "checkpoint", "step", "protocol", "num_devices"):
        if key in results:
            lines.append(f"- **{key}**: {results[key]}")
    for key, value in results.get("data", {}).items():
        lines.append(f"- **data.{key}**: {value}")
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {_format(value)} |" for name, value in results["metrics"].items()]
    if results.get("per_class"):
        lines += [
            "",
            "## Per class (test split)",
            "",
            "| class | name | precision | recall | F1 | support |",
            "|---|---|---|---|---|---|",
        ]
        for row in results["per_class"]:
            lines.append(
                f"| {row['class']} | {row['name']} | {_format(row['precision'])} | "
                f"{_format(row['recall'])} | {_format(row['f1'])} | {row['support']} |"
            )
    if results.get("rmse_by_model"):
        table = results["rmse_by_model"]
        columns = list(next(iter(table.values())))
        lines += [
            "",
            "## RMSE per index (z-scored scale, test split; lower is better)",
            "",
            "| model | " + " | ".join(columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for model, row in table.items():
            lines.append(f"| {model} | " + " | ".join(_format(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_results(workdir: str | os.PathLike, results: Mapping[str, Any]) -> None:
    """Writes ``workdir/results.json`` and ``workdir/results.md``."""
    path = Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(
        json.dumps(results, indent=2, default=_json_default, allow_nan=True) + "\n"
    )
    (path / "results.md").write_text(results_markdown(results))
