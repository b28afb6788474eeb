"""One PIMC pre-training step: a pure per-device function.

``train_step(state, batch, rng) -> (state, metrics)`` builds each tower's input from the
raw batch *inside* the step (recurrence plots of the S2 or S1 series, standardised and
augmented crops: the host never builds them, :func:`pimc_jax.preprocessing.view_inputs`),
embeds both views (``spec.views``), scores them with the symmetric InfoNCE over the global batch
(negatives gathered over the device axis), averages gradients over that axis and
applies the optax update. :func:`pimc_jax.parallel.map_over_devices` maps it over
all devices; called without an axis name it is the single-device step.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from pimc_jax import parallel
from pimc_jax.augment import flip_rotate, strong_augment
from pimc_jax.loss import symmetric_infonce
from pimc_jax.models import PIMC, ModelSpec, init_params
from pimc_jax.preprocessing import view_inputs
from pimc_jax.vocabulary import AUGMENTED_VIEWS, IMAGE_VIEWS, VIEW_KEYS


@flax.struct.dataclass
class TrainState:
    """The whole training state, a plain pytree.

    Attributes:
      step: int32 scalar, number of updates applied.
      params: Flax variables of :class:`~pimc_jax.models.PIMC`.
      opt_state: the optax state.
    """

    step: jax.Array
    params: Any
    opt_state: Any


def create_train_state(
    spec: ModelSpec, optimizer: optax.GradientTransformation, rng: jax.Array
) -> TrainState:
    """Initial state: fresh parameters, zero step."""
    variables = init_params(spec, rng).variables
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=variables, opt_state=optimizer.init(variables)
    )


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    rng: jax.Array,
    *,
    spec: ModelSpec,
    optimizer: optax.GradientTransformation,
    augment: bool = True,
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimisation step on this device's share of the global batch.

    Args:
      state: the :class:`TrainState` (identical on every device).
      batch: this device's pairs, the keys of ``spec.views``
        (:data:`pimc_jax.vocabulary.VIEW_KEYS`): ``bands`` (n, T, C) float32 reflectance
        (NaN = no-data), ``dates`` (n, T) float32 days, ``mask`` (n, T) bool, ``image``
        (n, k, k, Ci) float32 reflectance crops; ``s1_bands`` (n, T, C1) float32 dB,
        ``s1_dates``, ``s1_mask``; ``s1_image`` (n, k, k, C2) float32 dB.
      rng: PRNG key shared by all devices (a ``jax.random.key``, or its ``key_data`` as
        the device-mapped step receives it); folded with the step and each row's index
        in the global batch.
      spec: model spec (static).
      optimizer: the optax transformation (static).
      augment: random flips/rotations of the image crops (each image tower its own draw);
        ``s2_image_aug`` crops get the SimCLR-style chain
        (:func:`pimc_jax.augment.strong_augment`) instead.
      axis_name: the device axis to gather negatives and average gradients over.

    Returns:
      The new state and float32 scalar metrics (identical on every device):
      ``loss``, ``rp_to_image_top1`` and ``image_to_rp_top1`` (in-batch top-1 retrieval
      accuracy from tower 1 to tower 2 and back, whatever their views; chance is 1 /
      global batch), ``temperature``,
      ``grad_norm`` and ``param_norm``.
    """
    for view in spec.views:
        # Series (n, T, C) and crops (n, k, k, C); dates and masks are (n, T).
        chex.assert_rank(batch[VIEW_KEYS[view][0]], 4 if view in IMAGE_VIEWS else 3)
    rng = jax.random.fold_in(rng, state.step)
    local_rows = batch[VIEW_KEYS[spec.views[0]][0]].shape[0]
    first_row = 0 if axis_name is None else jax.lax.axis_index(axis_name) * local_rows
    inputs = []
    for tower, view in enumerate(spec.views):
        x = jax.lax.stop_gradient(view_inputs(spec, view, batch))
        if augment and view in IMAGE_VIEWS:
            # Tower 2 draws from ``rng`` itself (the default pair's draws), tower 1 from a
            # key of its own: two image views get independent flips and rotations.
            key = rng if tower == 1 else jax.random.fold_in(rng, 1_000_003)
            augment_fn = strong_augment if view in AUGMENTED_VIEWS else flip_rotate
            x = augment_fn(key, x, first_row + jnp.arange(local_rows))
        inputs.append(x)
    model = PIMC(spec)

    def loss_fn(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        out = model.apply(params, *inputs)
        return symmetric_infonce(out["z_rp"], out["z_image"], out["temperature"], axis_name)

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if axis_name is not None:
        grads = jax.lax.pmean(grads, axis_name)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": metrics["loss"],
        "rp_to_image_top1": metrics["a2b_top1"],
        "image_to_rp_top1": metrics["b2a_top1"],
        "temperature": metrics["temperature"],
        "grad_norm": optax.tree.norm(grads),
        "param_norm": optax.tree.norm(params),
    }
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def make_parallel_step(
    spec: ModelSpec, optimizer: optax.GradientTransformation, *, augment: bool = True
):
    """The step mapped over all local devices (state donated).

    Inputs: replicated state, batch sharded with :func:`pimc_jax.parallel.shard_batch`,
    replicated rng. Outputs have a leading device axis.
    """
    step = functools.partial(
        train_step, spec=spec, optimizer=optimizer, augment=augment, axis_name=parallel.AXIS_NAME
    )
    return parallel.map_over_devices(step, donate_argnums=(0,))
