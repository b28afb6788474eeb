"""Symmetric InfoNCE, the CLIP-form contrastive loss between the two towers.

For L2-normalised embeddings ``z_a`` (e.g. recurrence plots) and ``z_b`` (image
crops) of the same ``N`` pixels, row ``i`` of each is a positive pair and every
other row of the *global* batch is a negative::

    logits = z_a @ z_b.T / temperature                      # (N, N)
    loss   = ½ [CE(logits, diag) + CE(logits.T, diag)]

Under a device-parallel map, pass ``axis_name``: each device gathers every
device's embeddings, scores its own rows against the whole global batch and the
per-device losses are averaged, which equals the single-device loss on the
concatenated batch. Gradients flow back through the gather to the device that
owns each embedding; averaging gradients over the axis (as the training step
does) then gives the exact gradient of the global loss.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def _cross_entropy_diagonal(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean over rows of ``-log softmax(logits)[row, targets[row]]``."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, targets[:, None], axis=-1))


def symmetric_infonce(
    z_a: jax.Array,
    z_b: jax.Array,
    temperature: jax.Array | float,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CLIP-form symmetric InfoNCE over the (global) batch.

    Args:
      z_a: ``(n, D)`` float embeddings of modality A for this device's ``n`` pairs,
        L2-normalised along ``D``.
      z_b: ``(n, D)`` float embeddings of modality B, row ``i`` paired with ``z_a[i]``.
      temperature: positive scalar τ; logits are ``z_a · z_bᵀ / τ``.
      axis_name: name of the mapped device axis. When given, embeddings are gathered
        over it, so the negatives of each pair are all ``n × devices`` pairs, and
        the returned loss and metrics are the global-batch values (identical on
        every device).

    With ``axis_name`` the *value* of the loss is the global one, while its
    gradient on each device is that of the device's own rows; the mean of those
    gradients over the axis is the gradient of the global loss. Average gradients
    with ``jax.lax.pmean(grads, axis_name)`` after differentiating.

    Returns:
      ``(loss, metrics)``: scalar float32 loss, and a dict of float32 scalars
      ``loss``, ``a2b_top1`` (fraction of rows of A whose most similar B is its own
      pair), ``b2a_top1`` (likewise from B to A) and ``temperature``.
    """
    chex.assert_rank([z_a, z_b], 2)
    chex.assert_equal_shape([z_a, z_b])
    z_a = z_a.astype(jnp.float32)
    z_b = z_b.astype(jnp.float32)
    local_size = z_a.shape[0]
    if axis_name is None:
        all_a, all_b = z_a, z_b
        offset = 0
    else:
        all_a = jax.lax.all_gather(z_a, axis_name, tiled=True)
        all_b = jax.lax.all_gather(z_b, axis_name, tiled=True)
        offset = jax.lax.axis_index(axis_name) * local_size
    targets = offset + jnp.arange(local_size)
    inverse_temperature = 1.0 / jnp.asarray(temperature, jnp.float32)
    # This device's rows against every column of the global batch, both ways.
    logits_a2b = z_a @ all_b.T * inverse_temperature
    logits_b2a = z_b @ all_a.T * inverse_temperature
    loss = 0.5 * (
        _cross_entropy_diagonal(logits_a2b, targets) + _cross_entropy_diagonal(logits_b2a, targets)
    )
    a2b_top1 = jnp.mean(jnp.argmax(logits_a2b, axis=-1) == targets).astype(jnp.float32)
    b2a_top1 = jnp.mean(jnp.argmax(logits_b2a, axis=-1) == targets).astype(jnp.float32)
    if axis_name is not None:
        # Report the global-batch value, but differentiate only this device's share:
        # the caller averages gradients over the axis, and the gather's transpose has
        # already routed every device's cotangents to the owner of each embedding.
        global_loss, a2b_top1, b2a_top1 = jax.lax.pmean((loss, a2b_top1, b2a_top1), axis_name)
        loss = loss + jax.lax.stop_gradient(global_loss - loss)
    metrics = {
        "loss": loss,
        "a2b_top1": a2b_top1,
        "b2a_top1": b2a_top1,
        "temperature": jnp.asarray(temperature, jnp.float32),
    }
    return loss, metrics
