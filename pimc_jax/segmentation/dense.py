"""Dense features of an image tower over a whole chip: one feature vector per pixel.

An evaluation picks an image view, ``s2_image`` or ``s1_image``; the tower that reads it
(tower 1 or 2, whichever the checkpoint's ``spec.views`` names) runs fully
convolutionally over the chip (:func:`pimc_jax.encode.dense_image_features`): each pixel
gets the pooled features of the ``crop_size`` crop centred on it, as pre-training saw
crops, with the crop's windowed statistics (the ``"fast"`` mode of
:func:`pimc_jax.encode.encode_patch`, which also serves a tower-1 ``s1_image`` here).
Chips are reflect-padded by :func:`pimc_jax.encode.dense_margin` and processed in tiles of
rows, so memory stays bounded on 512 × 512 chips; one compilation per tile shape.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from pimc_jax.data.sen1floods11 import S1_BANDS, FloodChip
from pimc_jax.encode import dense_image_features, dense_margin
from pimc_jax.indices import canonical_band_name
from pimc_jax.models import ModelSpec, PIMCParams
from pimc_jax.preprocessing import normalize_crops, normalize_s1_crops

IMAGE_VIEWS: tuple[str, ...] = ("s1_image", "s2_image")
_ENCODERS: tuple[str, ...] = ("rp_encoder", "image_encoder")


def view_encoder(spec: ModelSpec, view: str) -> str:
    """The parameter name (``rp_encoder`` or ``image_encoder``) of the tower reading ``view``.

    Raises:
      ValueError: ``view`` is not an image view, or no tower of the spec reads it.
    """
    if view not in IMAGE_VIEWS:
        raise ValueError(f"the dense view must be one of {IMAGE_VIEWS}, got {view!r}")
    if view not in spec.views:
        raise ValueError(
            f"this evaluation reads the {view} tower, but the encoder's model.views are "
            f"{spec.views}"
        )
    return _ENCODERS[spec.views.index(view)]


def _as_image_tower(spec: ModelSpec, variables: Any, view: str) -> tuple[ModelSpec, Any]:
    """The spec and variables with the ``view`` tower in the image tower's place (what
    :func:`dense_image_features` reads)."""
    name = view_encoder(spec, view)
    tower_spec = dataclasses.replace(spec, image_encoder=getattr(spec, name))
    return tower_spec, {"params": {"image_encoder": variables["params"][name]}}


def view_channels(spec: ModelSpec, view: str) -> tuple[str, ...]:
    """Channel names the ``view`` tower reads, in order."""
    return spec.s1_image_bands if view == "s1_image" else spec.image_bands


def chip_view_image(chip: FloodChip, spec: ModelSpec, view: str) -> np.ndarray:
    """``(H, W, C)`` float32 raw input of the ``view`` tower: S2 reflectance or S1 dB, the
    channels picked by name.

    Raises:
      ValueError: a channel the tower reads is not in the chip.
    """
    wanted = view_channels(spec, view)
    if view == "s1_image":
        have, values = [canonical_band_name(n) for n in S1_BANDS], chip.s1
    else:
        have, values = [canonical_band_name(n) for n in chip.s2_band_names], chip.s2
    columns = []
    for name in wanted:
        if canonical_band_name(name) not in have:
            raise ValueError(f"chip {chip.chip_id}: the {view} tower reads {name!r}, not held")
        columns.append(have.index(canonical_band_name(name)))
    return np.asarray(values[..., columns], np.float32)


@functools.partial(jax.jit, static_argnames=("spec", "view", "margin"))
def _dense_tile(
    spec: ModelSpec, view: str, variables: Any, tile: jax.Array, margin: int
) -> jax.Array:
    normalize = normalize_s1_crops if view == "s1_image" else normalize_crops
    image = normalize(spec, tile[None])[0]
    tower_spec, tower_variables = _as_image_tower(spec, variables, view)
    features = dense_image_features(tower_spec, tower_variables, image)
    return features[margin : tile.shape[0] - margin, margin : tile.shape[1] - margin]


def _reflect(index: np.ndarray, size: int) -> np.ndarray:
    """Positions ``index`` reflected into ``[0, size)`` (edge not repeated), any distance."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    folded = np.mod(index, period)
    return np.where(folded < size, folded, period - folded)


def dense_view_features(
    params: PIMCParams, view: str, image: np.ndarray, tile_rows: int = 128
) -> np.ndarray:
    """``(H, W, F)`` float32 features of the ``view`` tower at every pixel of ``image``.

    Args:
      params: the encoder.
      view: ``s1_image`` or ``s2_image`` (:func:`view_encoder`).
      image: ``(H, W, C)`` raw input (:func:`chip_view_image`; NaN = no data, standardised
        to the mean like training crops).
      tile_rows: rows per tile (memory bound; the result does not depend on it).
    """
    spec = params.spec
    tower_spec, _ = _as_image_tower(spec, params.variables, view)
    margin = dense_margin(tower_spec)
    height, width, _ = image.shape
    tile = min(height, max(int(tile_rows), 1))
    cols = _reflect(np.arange(-margin, width + margin), width)
    pieces = []
    for start in range(0, height, tile):
        rows = _reflect(np.arange(start - margin, start + tile + margin), height)
        features = _dense_tile(spec, view, params.variables, image[rows[:, None], cols], margin)
        pieces.append(np.asarray(features)[: min(tile, height - start)])
    return np.concatenate(pieces).astype(np.float32)


def chip_features(
    params: PIMCParams, views: Sequence[str], chip: FloodChip, tile_rows: int = 128
) -> np.ndarray:
    """``(H, W, ΣF)`` dense features of ``chip``, the towers of ``views`` concatenated."""
    return np.concatenate(
        [
            dense_view_features(params, view, chip_view_image(chip, params.spec, view), tile_rows)
            for view in views
        ],
        axis=-1,
    )
