"""The optimizer and learning-rate schedule shared by pre-training and fine-tuning."""

from __future__ import annotations

import jax
import ml_collections
import optax


def warmup_cosine(
    peak: float, total_steps: int, warmup_steps: int, end_value: float = 0.0
) -> optax.Schedule:
    """Linear warmup from 0 to ``peak``, then cosine decay to ``end_value`` at ``total_steps``.

    The warmup is capped at ``total_steps - 1`` steps so that short runs still decay.
    """
    warmup = min(warmup_steps, max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=end_value,
    )


def adamw(
    schedule: optax.Schedule,
    *,
    weight_decay: float,
    grad_clip_norm: float | None = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
) -> optax.GradientTransformation:
    """Global-norm clipping (unless ``grad_clip_norm`` is falsy), then AdamW on ``schedule``.

    No weight decay on norms, biases and the temperature (rank < 2 leaves).
    """
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
    chain = [optax.clip_by_global_norm(grad_clip_norm)] if grad_clip_norm else []
    chain.append(optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask))
    return optax.chain(*chain)


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warmup to ``optimizer.learning_rate``, then cosine decay to ``end_factor``×."""
    opt = config.optimizer
    return warmup_cosine(
        opt.learning_rate, config.total_steps, opt.warmup_steps, opt.learning_rate * opt.end_factor
    )


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """AdamW with warmup-cosine and global-norm clipping (``optimizer.name='adamw'``)."""
    opt = config.optimizer
    if opt.name != "adamw":
        raise ValueError(f"optimizer.name must be 'adamw', got {opt.name!r}")
    return adamw(
        learning_rate_schedule(config),
        weight_decay=opt.weight_decay,
        grad_clip_norm=opt.grad_clip_norm,
        b1=opt.b1,
        b2=opt.b2,
    )
