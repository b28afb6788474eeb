"""A PIMC tower as a function of evaluation arrays: frozen features, or features plus a head.

:func:`tower_features` runs one tower's backbone on raw inputs (the same preprocessing as
pre-training, :mod:`pimc_jax.preprocessing`); :func:`tower_forward` adds a linear head
(:func:`tower_params` builds its trainable tree); :func:`predict` runs any such function
over all rows in fixed-size chunks, and :func:`frozen_features` is the two together: the
backbone features the linear probes read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pimc_jax.models import PIMC, TOWERS, ModelSpec, PIMCParams
from pimc_jax.preprocessing import view_inputs
from pimc_jax.vocabulary import pad_rows

# A forward function maps (trainable params, batch of inputs) to (B, outputs) float32.
Forward = Callable[[Any, Mapping[str, jax.Array]], jax.Array]


def plot_tower(spec: ModelSpec, sensor: str | None = None) -> str:
    """The first tower fed recurrence plots (of ``sensor`` ``"s1"``/``"s2"`` if given).

    Raises:
      ValueError: the spec's views hold no such plot view.
    """
    towers = spec.plot_towers(sensor)
    if not towers:
        wanted = f"{sensor}_rp" if sensor else "s2_rp or s1_rp"
        raise ValueError(
            f"this evaluation needs a recurrence-plot tower ({wanted}), but the encoder's "
            f"model.views are {spec.views}"
        )
    return towers[0]


def tower_features(spec: ModelSpec, tower: str, band_names: Sequence[str] | None = None) -> Forward:
    """Forward function of one PIMC tower's backbone: raw inputs → pooled features.

    The same arguments give the same function object (cached), so its compiled code is
    reused across splits, evaluations and polled checkpoints of one spec.

    Args:
      spec: the model spec.
      tower: ``"rp"`` (tower 1) or ``"image"`` (tower 2); the batch holds the keys of the
        view feeding it (``spec.tower_view(tower)``, :func:`pimc_jax.preprocessing.view_inputs`):
        for ``s2_rp`` ``bands`` (B, T, C), ``dates`` (B, T), ``mask`` (B, T); for
        ``s2_image`` ``image`` (B, k, k, C) reflectance in ``spec.image_bands`` order; for
        ``s1_rp`` ``s1_bands`` (B, T, C1) dB, ``s1_dates``, ``s1_mask``; for ``s1_image``
        ``s1_image`` (B, k, k, C2) dB.
      band_names: names of the series bands (default ``spec.band_names``).

    Returns:
      ``features(variables, batch) -> (B, F)`` float32, ``variables`` the Flax variables of
      :class:`~pimc_jax.models.PIMC` and ``F`` the tower's
      :meth:`~pimc_jax.models.ModelSpec.feature_dim`.
    """
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {TOWERS}, got {tower!r}")
    names = tuple(band_names) if band_names is not None else spec.band_names
    return _tower_features(spec, tower, names)


@functools.lru_cache(maxsize=64)
def _tower_features(spec: ModelSpec, tower: str, names: tuple[str, ...]) -> Forward:
    model = PIMC(spec)

    view = spec.tower_view(tower)
    method = PIMC.encode_rp if tower == "rp" else PIMC.encode_image

    def features(variables: Any, batch: Mapping[str, jax.Array]) -> jax.Array:
        out, _ = model.apply(variables, view_inputs(spec, view, batch, names), method=method)
        return out

    return features


def tower_forward(spec: ModelSpec, tower: str, band_names: Sequence[str] | None = None) -> Forward:
    """Forward function of one PIMC tower (backbone features) plus a linear head.

    Args:
      spec, tower, band_names: as for :func:`tower_features`.

    Returns:
      ``forward(params, batch) -> (B, O)`` with ``params = {"model": variables,
      "head": {"kernel": (F, O), "bias": (O,)}}`` (see :func:`tower_params`).
    """
    names = tuple(band_names) if band_names is not None else spec.band_names
    return _tower_forward(spec, tower, names)


@functools.lru_cache(maxsize=64)
def _tower_forward(spec: ModelSpec, tower: str, names: tuple[str, ...]) -> Forward:
    features = tower_features(spec, tower, names)

    def forward(params: Any, batch: Mapping[str, jax.Array]) -> jax.Array:
        return features(params["model"], batch) @ params["head"]["kernel"] + params["head"]["bias"]

    return forward


def tower_params(params: PIMCParams, tower: str, num_outputs: int) -> dict[str, Any]:
    """Trainable tree for :func:`tower_forward`: the model variables and a zero linear head.

    The head maps the tower's ``F`` backbone features
    (:meth:`~pimc_jax.models.ModelSpec.feature_dim`) to ``num_outputs``.
    """
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {TOWERS}, got {tower!r}")
    width = params.spec.feature_dim(tower)
    return {
        "model": jax.tree.map(jnp.asarray, params.variables),
        "head": {"kernel": jnp.zeros((width, num_outputs)), "bias": jnp.zeros((num_outputs,))},
    }


@functools.lru_cache(maxsize=64)
def _jitted(forward: Forward) -> Callable[..., Any]:
    """One ``jax.jit`` wrapper per forward function, so its executables are reused."""
    return jax.jit(forward)


def predict(
    forward: Forward, params: Any, inputs: Mapping[str, np.ndarray], batch_size: int = 256
) -> np.ndarray:
    """``forward`` over all rows of ``inputs`` in fixed-size chunks → ``(N, O)`` float32."""
    arrays = {key: np.asarray(value) for key, value in inputs.items()}
    num = next(iter(arrays.values())).shape[0]
    apply = _jitted(forward)
    outputs = []
    for start in range(0, num, batch_size):
        chunk = {key: value[start : start + batch_size] for key, value in arrays.items()}
        rows = next(iter(chunk.values())).shape[0]
        chunk = {key: pad_rows(value, batch_size) for key, value in chunk.items()}
        outputs.append(np.asarray(apply(params, chunk))[:rows])
    if not outputs:
        raise ValueError("predict needs at least one row")
    return np.concatenate(outputs).astype(np.float32)


def frozen_features(
    params: PIMCParams,
    tower: str,
    inputs: Mapping[str, np.ndarray],
    band_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Backbone features of a frozen encoder over all rows of ``inputs``.

    Args:
      params: the encoder.
      tower: ``"rp"`` or ``"image"``; ``inputs`` holds that tower's batch fields
        (:func:`tower_features`).
      band_names: names of the series bands (default ``params.spec.band_names``).

    Returns:
      ``(N, F)`` float32.
    """
    return predict(tower_features(params.spec, tower, band_names), params.variables, inputs)
