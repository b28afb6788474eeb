"""Image towers run densely: every pixel's crop features in one fully convolutional pass.

The Flax module itself runs densely (:meth:`pimc_jax.models.PIMC.encode_dense`, the same
parameters as on crops), for both kinds of tower (``EncoderSpec.padding``):

* ``"valid"`` towers (:mod:`pimc_jax.valid_tower`): exact by construction; every pixel's
  features equal those of its reflect-padded ``crop_size`` crop through the per-crop
  tower, up to float rounding (:func:`dense_view`, used by
  :func:`pimc_jax.encode.encode_patch` in every mode).
* ``"same"`` towers (the paper's ResNet, and every checkpoint written before the field
  existed): zero padding inside each crop makes any dense pass an approximation, the
  windowed one of :mod:`pimc_jax.windowed` (the ``"fast"`` mode of
  :func:`pimc_jax.encode.encode_patch`); ``bench/dense_encode.py`` measures its agreement
  with ``"exact"``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from pimc_jax import windowed
from pimc_jax.data.views import _reflect_index
from pimc_jax.models import (
    PIMC,
    TOWERS,
    EncoderSpec,
    ModelSpec,
    PIMCParams,
    ResNetEncoder,
    compute_dtype,
)
from pimc_jax.preprocessing import normalize_crops, normalize_s1_crops
from pimc_jax.vocabulary import IMAGE_VIEWS, S2_IMAGE_VIEWS


def dense_image_features(
    spec: ModelSpec,
    variables: Any,
    image: jax.Array,
    crop_size: int | None = None,
    *,
    pool: bool = True,
) -> jax.Array:
    """The image tower run fully convolutionally: every pixel's pooled crop features at once.

    The tower's own dense mode (:meth:`~pimc_jax.models.ResNetEncoder.__call__` with
    ``dense_crop``): for a ``padding="valid"`` tower exactly ``encode_image`` of each
    pixel's crop, up to float rounding; for a ``"same"`` tower the windowed approximation
    of :mod:`pimc_jax.windowed` (``"fast"``). Pixels within :func:`dense_margin` of the
    map's edges read zeros beyond them: pad the map by that much (reflecting, as crops
    do) and drop the border.

    Args:
      spec: model spec (its ``image_encoder`` and ``crop_size``).
      variables: Flax variables of :class:`~pimc_jax.models.PIMC`.
      image: ``(H, W, C)`` float32 standardised image
        (:func:`~pimc_jax.preprocessing.normalize_crops` of the composite).
      crop_size: default ``spec.crop_size``.
      pool: False (``"same"`` towers only): return the last stage's map before the final
        average instead; at a pixel it holds what the crop centred there has at the
        pixel's own grid position (exactly so for a tower without GroupNorm, away from the
        crop's edges).

    Returns:
      ``(H, W, F)`` float32 features, the counterpart of ``encode_image``'s features.
    """
    encoder: EncoderSpec = spec.image_encoder
    tower = ResNetEncoder(**dataclasses.asdict(encoder), dtype=compute_dtype(spec.dtype))
    variables = {"params": variables["params"]["image_encoder"]}
    size = crop_size or spec.crop_size
    return tower.apply(variables, image[None], dense_crop=size, pool=pool)[0]


def dense_margin(spec: ModelSpec, crop_size: int | None = None) -> int:
    """How far (pixels) :func:`dense_image_features` reaches from a pixel: pad a map by this
    much and its inner pixels do not depend on the map's edges."""
    encoder: EncoderSpec = spec.image_encoder
    size = crop_size or spec.crop_size
    if encoder.padding == "valid":  # a pixel reads its own crop only
        return size // 2
    return windowed.dense_margin(encoder, size)


def _row_tiles(
    frame: np.ndarray, margin: int, rows_per_chunk: int, fn: Callable[..., tuple]
) -> tuple[np.ndarray, ...]:
    """``fn(tile, margin)`` over tiles of rows of an ``(H, W, C)`` frame, concatenated.

    Each tile is cut from the frame reflect-padded by ``margin`` (so that a tile's pixels
    see what they would in one pass over the whole raster); every tile has the same shape
    (the last one reaches further into the reflection), so one compilation serves them
    all. ``fn`` returns arrays with one row per pixel of the tile's ``tile × W`` inner
    pixels, in row-major order.
    """
    height, width, _ = frame.shape
    tile = min(height, max(rows_per_chunk, 2 * margin))
    cols = _reflect_index(np.arange(-margin, width + margin), width)
    pieces = []
    for start in range(0, height, tile):
        rows = _reflect_index(np.arange(start - margin, start + tile + margin), height)
        outputs = fn(frame[rows[:, None], cols[None, :]], margin)
        keep = min(tile, height - start) * width
        pieces.append([np.asarray(out)[:keep] for out in outputs])
    return tuple(np.concatenate(parts) for parts in zip(*pieces, strict=True))


def _fast_image(
    params: PIMCParams, composite: np.ndarray, rows_per_chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """``"fast"`` image view of a whole ``(H, W, C)`` composite (a ``"same"`` tower 2), in
    tiles of rows (:func:`_row_tiles`). Returns ``(H·W, F)`` features and ``(H·W, D)``
    embeddings."""
    fn = functools.partial(_encode_dense, params, view="s2_image", tower=1)
    return _row_tiles(composite, dense_margin(params.spec), rows_per_chunk, fn)


@functools.partial(jax.jit, static_argnames=("view", "tower", "margin"))
def _encode_dense(
    params: PIMCParams, frame: jax.Array, margin: int, view: str, tower: int
) -> tuple[jax.Array, jax.Array]:
    """``(h + 2m, w + 2m, C)`` raw frame → features ``(h·w, F)``, embeddings ``(h·w, D)``
    of tower ``tower`` reading image view ``view``, run densely."""
    spec = params.spec
    normalize = normalize_crops if view in S2_IMAGE_VIEWS else normalize_s1_crops
    image = normalize(spec, frame[None])
    features, embeddings = PIMC(spec).apply(
        params.variables, image, TOWERS[tower], method=PIMC.encode_dense
    )
    height, width = frame.shape[0] - 2 * margin, frame.shape[1] - 2 * margin
    inner = lambda x: x[0, margin : margin + height, margin : margin + width]
    features, embeddings = inner(features), inner(embeddings)
    return features.reshape(height * width, -1), embeddings.reshape(height * width, -1)


def dense_crops_valid(frame: np.ndarray, crop_size: int) -> np.ndarray:
    """``(H·W,)`` bool: for each pixel of an ``(H, W, C)`` frame, whether its reflect-padded
    ``crop_size`` crop holds a finite value (:func:`pimc_jax.encode_checks.crops_valid` of
    every crop, by windowed sums)."""
    height, width, _ = frame.shape
    half = crop_size // 2
    rows = _reflect_index(np.arange(-half, height + crop_size - 1 - half), height)
    cols = _reflect_index(np.arange(-half, width + crop_size - 1 - half), width)
    finite = np.isfinite(frame).any(axis=-1)[rows[:, None], cols[None, :]].astype(np.int64)
    total = np.pad(finite.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    k = crop_size
    counts = total[k:, k:] - total[:-k, k:] - total[k:, :-k] + total[:-k, :-k]
    return counts.reshape(-1) > 0


def is_dense_exact(spec: ModelSpec, tower: int) -> bool:
    """Whether tower ``tower`` (0 or 1) reads an image view through a ``"valid"`` tower,
    whose dense pass (:func:`dense_view`) is exact."""
    encoder = spec.image_encoder if tower else spec.rp_encoder
    return spec.views[tower] in IMAGE_VIEWS and encoder.padding == "valid"


def dense_view(
    params: PIMCParams, frame: np.ndarray, tower: int, rows_per_chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact dense encoding of tower ``tower``'s image view (:func:`is_dense_exact`) over
    a whole ``(H, W, C)`` raw frame (S2 reflectance, NaN = no data, or S1 dB), in tiles
    of rows.

    Returns ``(H·W, F)`` features, ``(H·W, D)`` embeddings and ``(H·W,)`` crop validity,
    each pixel's as :func:`pimc_jax.encode.encode` gives for its reflect-padded
    ``crop_size`` crop.
    """
    view = params.spec.views[tower]
    fn = functools.partial(_encode_dense, params, view=view, tower=tower)
    margin = params.spec.crop_size // 2  # a pixel reads its own crop only
    features, embeddings = _row_tiles(frame, margin, rows_per_chunk, fn)
    return features, embeddings, dense_crops_valid(frame, params.spec.crop_size)
