"""Fine-tuning: the ``finetune`` protocol's supervised training of a tower plus a head.

:func:`train_supervised` trains any forward function (a PIMC tower and its linear head from
:func:`pimc_jax.evaluation.towers.tower_forward`, or a baseline model) with AdamW and a
warmup-cosine schedule in one jitted step, optionally keeping the best validation step;
only the chosen tower's backbone and the head move, everything else stays frozen. Runs on
one device: the evaluation sets are small. :func:`finetune_settings` reads its settings
from an eval config's ``finetune`` block, :func:`class_weights` and
:func:`series_augmentation` the task-dependent extras.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from pimc_jax.evaluation.towers import Forward, predict
from pimc_jax.optim import adamw, warmup_cosine
from pimc_jax.preprocessing import augment_series
from pimc_jax.vocabulary import pad_rows

# An augmentation maps (PRNG key, batch of inputs) to a batch of the same structure.
Augment = Callable[[jax.Array, Mapping[str, jax.Array]], dict[str, jax.Array]]


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
        ema_decay=float(tune.get("ema_decay", 0.0)),
        label_smoothing=float(tune.get("label_smoothing", 0.0)),
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


_ROW_BUCKET = 32


@functools.lru_cache(maxsize=8)
def _training_step(
    forward: Forward,
    loss: str,
    tower: str | None,
    rates: tuple[float, float | None, float],
    schedule: tuple[int, int],
    augment: Augment | None,
    ema_decay: float,
    label_smoothing: float,
) -> tuple[optax.GradientTransformation, Callable[..., Any]]:
    """The optimizer and the jitted step of :func:`train_supervised`, built once per setting.

    ``rates``: backbone peak learning rate, head peak learning rate (None = the same),
    weight decay; ``schedule``: total and warmup steps. Cached, so that successive calls
    with the same forward function and settings reuse one compiled step.
    """
    learning_rate, head_learning_rate, weight_decay = rates
    steps, warmup_steps = schedule
    transforms = {
        "train": adamw(
            warmup_cosine(learning_rate, steps, warmup_steps), weight_decay=weight_decay
        ),
        "freeze": optax.set_to_zero(),
    }
    separate_head = head_learning_rate is not None
    if separate_head:
        transforms["head"] = adamw(
            warmup_cosine(head_learning_rate, steps, warmup_steps), weight_decay=weight_decay
        )
    optimizer = optax.multi_transform(
        transforms, lambda params: _trainable_labels(params, tower, separate_head)
    )

    def loss_fn(params, batch, target, weights):
        outputs = forward(params, batch)
        if loss == "cross_entropy":
            if label_smoothing:
                soft = optax.smooth_labels(
                    jax.nn.one_hot(target, outputs.shape[-1]), label_smoothing
                )
                terms = optax.softmax_cross_entropy(outputs, soft)
            else:
                terms = optax.softmax_cross_entropy_with_integer_labels(outputs, target)
            if weights is None:
                return terms.mean()
            return jnp.sum(terms * weights[target]) / jnp.maximum(weights[target].sum(), 1e-12)
        return jnp.mean((outputs - target.reshape(outputs.shape)) ** 2)

    @jax.jit
    def train_step(params, opt_state, ema, data, labels, weights, key, rows, step):
        batch = jax.tree.map(lambda x: x[rows], data)
        if augment is not None:
            batch = augment(jax.random.fold_in(key, step), batch)
        value, grads = jax.value_and_grad(loss_fn)(params, batch, labels[rows], weights)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if ema_decay > 0.0:
            ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
        else:
            ema = params
        return params, opt_state, ema, value

    return optimizer, train_step


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
    ema_decay: float = 0.0,
    label_smoothing: float = 0.0,
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
      forward: ``forward(params, batch) -> (B, O)`` (e.g.
        :func:`~pimc_jax.evaluation.towers.tower_forward`).
      params: initial trainable tree.
      inputs: dict of ``(N, ...)`` arrays, the ``batch`` fields ``forward`` reads.
      targets: ``(N,)`` int labels for ``loss="cross_entropy"``, ``(N, O)`` float for
        ``loss="mse"``.
      tower: with :func:`~pimc_jax.evaluation.towers.tower_params` trees, ``"rp"`` /
        ``"image"`` trains only that tower's backbone and the head (the rest stays as it
        is); None trains everything.
      head_learning_rate: peak learning rate of the ``head`` subtree (default
        ``learning_rate``), e.g. higher than the backbone's for a pre-trained encoder.
      class_weights: ``(K,)`` weights of the cross-entropy terms by target class
        (:func:`class_weights`).
      augment: ``augment(rng, batch) -> batch``, pure and jittable.
      validation: ``(inputs, targets)`` for model selection.
      ema_decay: ``d`` in [0, 1); above 0, the parameters scored and returned are the
        exponential moving average of the parameters after each step (Polyak averaging):
        ``ema ← d·ema + (1 − d)·params`` from ``ema = initial``, bias-corrected as
        ``(ema − d^t·initial) / (1 − d^t)`` after ``t`` steps, so the initial
        parameters carry no weight. 0: the trained parameters themselves.
      label_smoothing: ``ε`` in [0, 1) for ``cross_entropy``: the targets are
        ``(1 − ε)·one_hot + ε / K`` over the ``K`` outputs (0: the labels themselves).

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
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1), got {label_smoothing}")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"{name}: ema_decay must be in [0, 1), got {ema_decay}")
    separate_head = head_learning_rate is not None and head_learning_rate != learning_rate
    optimizer, train_step = _training_step(
        forward,
        loss,
        tower,
        (learning_rate, head_learning_rate if separate_head else None, weight_decay),
        (steps, warmup_steps),
        augment,
        ema_decay,
        label_smoothing,
    )
    params = jax.tree.map(jnp.asarray, params)  # device arrays, as every later step's
    opt_state = optimizer.init(params)
    # Rows padded to a multiple of _ROW_BUCKET (never gathered: the step draws row indices
    # below ``num``), so models trained on sets of nearly the same size, such as the
    # members of a cross-fitted ensemble, share one compiled step.
    padded = num + -num % _ROW_BUCKET
    data = jax.device_put({k: pad_rows(np.asarray(v), padded) for k, v in inputs.items()})
    labels = jax.device_put(pad_rows(np.asarray(targets), padded))
    weights = None if class_weights is None else jnp.asarray(class_weights, jnp.float32)
    key = jax.random.key(seed)

    initial = params

    def averaged(ema: Any, step: int) -> Any:
        """``(ema − d^step·initial) / (1 − d^step)``: the average of the trained parameters."""
        if ema_decay == 0.0:
            return ema
        kept = ema_decay**step
        return jax.tree.map(lambda e, i: (e - kept * i) / (1.0 - kept), ema, initial)

    select = validation is not None and eval_every_steps > 0 and len(validation[1]) > 0
    if select and score_fn is None:
        score_fn = functools.partial(_negative_loss, loss)
    best_score, best_step, best_params = -np.inf, 0, params
    ema = params
    rng = np.random.default_rng(seed)
    order = np.zeros((0,), np.int64)
    for step in range(1, steps + 1):
        while order.size < batch_size:
            order = np.concatenate([order, rng.permutation(num)])
        rows, order = order[:batch_size], order[batch_size:]
        params, opt_state, ema, value = train_step(
            params, opt_state, ema, data, labels, weights, key, rows, step
        )
        if (log_every_steps and step % log_every_steps == 0) or step == steps:
            value = float(value)
            if not np.isfinite(value):
                raise FloatingPointError(f"{name}: loss is {value} at step {step}")
            logging.info("%s step %d/%d loss %.4f", name, step, steps, value)
        if select and (step % eval_every_steps == 0 or step == steps):
            candidate = averaged(ema, step)
            score = float(score_fn(predict(forward, candidate, validation[0]), validation[1]))
            if score >= best_score:  # arrays are immutable: keeping a reference is enough
                best_score, best_step, best_params = score, step, candidate
    if select:
        logging.info("%s: kept step %d (validation score %.4f)", name, best_step, best_score)
        return best_params
    return averaged(ema, steps)
