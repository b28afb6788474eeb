"""Image towers run densely: every pixel's crop features in one fully convolutional pass.

Two implementations, one per kind of tower (``EncoderSpec.padding``):

* ``"valid"`` towers (:mod:`pimc_jax.valid_tower`): the Flax module itself runs densely
  (:meth:`pimc_jax.models.PIMC.encode_dense`) and is exact by construction: every
  pixel's features equal those of its reflect-padded ``crop_size`` crop through the
  per-crop tower, up to float rounding (:func:`dense_view`, used by
  :func:`pimc_jax.encode.encode_patch` in every mode).
* ``"same"`` towers (the paper's ResNet, and every checkpoint written before the field
  existed): zero padding inside each crop makes any dense pass an approximation; the
  windowed second implementation here (:func:`dense_image_features`, the ``"fast"``
  mode of :func:`pimc_jax.encode.encode_patch`) differs from ``"exact"`` in two ways
  only: (1) convolutions near a crop's edge see the real neighbouring pixels where the
  exact crop sees zero padding, and (2) GroupNorm statistics at a position are those of
  the crop-sized window centred on it, where in the exact crop every position of the crop
  shares the crop's statistics. Strided layers keep every pixel's sampling grid (they run
  at full resolution with dilated kernels), so nothing else changes;
  ``bench/dense_encode.py`` measures its agreement with ``"exact"``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pimc_jax.data.views import _reflect_index
from pimc_jax.models import (
    PIMC,
    TOWERS,
    EncoderSpec,
    ModelSpec,
    PIMCParams,
    ResNetEncoder,
    _groups,
    compute_dtype,
)
from pimc_jax.preprocessing import normalize_crops, normalize_s1_crops
from pimc_jax.vocabulary import IMAGE_VIEWS, S2_IMAGE_VIEWS


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of XLA's ``"SAME"`` along an axis of ``size`` positions."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _window_sum(x: jax.Array, count: int, dilation: int, offset: int) -> jax.Array:
    """``out[q] = Σ_j x[q − offset + j·dilation]`` (``j < count``) along axes 1 and 2 of a
    ``(1, H, W, C)`` map, zeros beyond its edges; same shape as ``x``."""
    for axis in (1, 2):
        length = x.shape[axis]
        after = max((count - 1) * dilation - offset, 0)
        pad = [(0, 0)] * 4
        pad[axis] = (offset, after)
        window, dilations = [1] * 4, [1] * 4
        window[axis], dilations[axis] = count, dilation
        summed = jax.lax.reduce_window(
            jnp.pad(x, pad),
            0.0,
            jax.lax.add,
            window,
            (1, 1, 1, 1),
            "VALID",
            window_dilation=dilations,
        )
        x = jax.lax.slice_in_dim(summed, 0, length, axis=axis)
    return x


@dataclasses.dataclass
class _Grid:
    """Where one crop's feature map lies in a dense map: ``count`` positions per axis,
    ``dilation`` pixels apart, the first ``offset`` pixels before the crop's centre."""

    count: int
    dilation: int = 1
    offset: int = 0

    def advance(self, stride: int) -> None:
        self.count, self.dilation = -(-self.count // stride), self.dilation * stride

    def conv(self, x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
        """The crop's ``"SAME"`` convolution of ``stride`` at every position; updates the grid."""
        size = kernel.shape[0]
        before, _ = _same_padding(self.count, size, stride)
        d = self.dilation
        out = jax.lax.conv_general_dilated(
            x,
            kernel.astype(x.dtype),
            (1, 1),
            [(before * d, (size - 1 - before) * d)] * 2,
            rhs_dilation=(d, d),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        self.advance(stride)
        return out

    def max_pool(self, x: jax.Array) -> jax.Array:
        """The crop's 3×3 stride-2 ``"SAME"`` max-pool at every position."""
        before, _ = _same_padding(self.count, 3, 2)
        d = self.dilation
        out = jax.lax.reduce_window(
            x,
            -jnp.inf,
            jax.lax.max,
            (1, 3, 3, 1),
            (1, 1, 1, 1),
            [(0, 0), (before * d, (2 - before) * d), (before * d, (2 - before) * d), (0, 0)],
            window_dilation=(1, d, d, 1),
        )
        self.advance(2)
        return out

    def mean(self, x: jax.Array) -> jax.Array:
        """Mean over the crop's positions of the crop centred at every position."""
        return _window_sum(x, self.count, self.dilation, self.offset) / self.count**2

    def group_norm(self, x: jax.Array, params: Mapping[str, Any], groups: int) -> jax.Array:
        """GroupNorm with each position's statistics over the crop centred on it."""
        channels = x.shape[-1]
        by_group = lambda y: y.reshape(*y.shape[:-1], groups, channels // groups).mean(-1)
        mean = self.mean(by_group(x))
        var = jnp.maximum(self.mean(by_group(x * x)) - mean * mean, 0.0)
        per_channel = lambda g: jnp.repeat(g, channels // groups, axis=-1)
        inv = per_channel(jax.lax.rsqrt(var + 1e-6))
        return (x - per_channel(mean)) * inv * params["scale"] + params["bias"]

    def reach(self, kernel: int, stride: int) -> int:
        """How far (pixels) a ``kernel``/``stride`` convolution reaches on this grid."""
        before, _ = _same_padding(self.count, kernel, stride)
        return max(before, kernel - 1 - before) * self.dilation

    def window_reach(self) -> int:
        return max(self.offset, (self.count - 1) * self.dilation - self.offset)


def _norm(
    grid: _Grid, x: jax.Array, params: Mapping[str, Any], name: str, groups: int, width: int
) -> jax.Array:
    """The norm of layer ``name``: windowed GroupNorm, or with ``groups == 0`` the plain
    tower's zero-initialised scale (``norm2``) or nothing."""
    if groups:
        return grid.group_norm(x, params[name], _groups(width, groups))
    return x * params[name] if name == "norm2" else x


def _conv(grid: _Grid, x: jax.Array, params: Mapping[str, Any], stride: int) -> jax.Array:
    out = grid.conv(x, params["kernel"], stride)
    return out + params["bias"] if "bias" in params else out


def dense_image_features(
    spec: ModelSpec,
    variables: Any,
    image: jax.Array,
    crop_size: int | None = None,
    *,
    pool: bool = True,
) -> jax.Array:
    """The image tower run fully convolutionally: every pixel's pooled crop features at once.

    A tower with ``padding="valid"`` runs its own dense mode
    (:meth:`~pimc_jax.models.ResNetEncoder.__call__` with ``dense_crop``): exactly
    ``encode_image`` of each pixel's crop, up to float rounding. For a ``"same"`` tower
    this is the second, windowed implementation below, which approximates
    ``encode_image`` on the ``crop_size`` crop centred on each pixel (module docstring,
    ``"fast"``): strided layers run at full resolution with dilated kernels so
    that each pixel keeps its crop's sampling grid, GroupNorm takes each position's
    statistics over the crop-sized window centred on it, and the final average pools over
    the pixel's crop window. Pixels within :func:`dense_margin` of the map's edges see
    zero padding: pad the map by that much (reflecting, as crops do) and drop the border.

    Args:
      spec: model spec (its ``image_encoder`` and ``crop_size``).
      variables: Flax variables of :class:`~pimc_jax.models.PIMC`.
      image: ``(H, W, C)`` float32 standardised image
        (:func:`~pimc_jax.preprocessing.normalize_crops` of the composite).
      crop_size: default ``spec.crop_size``.
      pool: False: return the last stage's map before the final average instead; at a
        pixel it holds what the crop centred there has at the pixel's own grid position
        (exactly so for a tower without GroupNorm, away from the crop's edges).

    Returns:
      ``(H, W, F)`` float32 features, the counterpart of ``encode_image``'s features.
    """
    encoder: EncoderSpec = spec.image_encoder
    params = variables["params"]["image_encoder"]
    size = crop_size or spec.crop_size
    if encoder.padding == "valid":  # exact: the tower's own dense mode
        if not pool:
            raise ValueError("pool=False is for towers with padding='same'")
        tower = ResNetEncoder(**dataclasses.asdict(encoder), dtype=compute_dtype(spec.dtype))
        x = image[None].astype(jnp.float32)
        return tower.apply({"params": params}, x, dense_crop=size)[0]
    grid = _Grid(size, 1, size // 2)
    groups = encoder.norm_groups
    x = image[None].astype(jnp.float32)
    means = grid.mean(x) if encoder.input_means and pool else None  # the crop's band means
    x = _conv(grid, x, params["Conv_0"], encoder.stem_stride)
    if groups:
        x = grid.group_norm(x, params["GroupNorm_0"], _groups(encoder.stem_width, groups))
    x = jax.nn.relu(x)
    if encoder.stem_pool:
        x = grid.max_pool(x)
    index = 0
    for stage, (blocks, width) in enumerate(zip(encoder.stage_sizes, encoder.widths, strict=True)):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            p = params[f"ResidualBlock_{index}"]
            index += 1
            entry = dataclasses.replace(grid)
            y = _conv(grid, x, p["conv1"], stride)
            y = jax.nn.relu(_norm(grid, y, p, "norm1", groups, width))
            y = _norm(grid, _conv(grid, y, p["conv2"], 1), p, "norm2", groups, width)
            if "proj_conv" in p:
                x = _conv(entry, x, p["proj_conv"], stride)
                x = _norm(grid, x, p, "proj_norm", groups, width)
            x = jax.nn.relu(x + y)
    if not pool:
        return x[0]
    pooled = grid.mean(x)
    return (pooled if means is None else jnp.concatenate([pooled, means], axis=-1))[0]


def dense_margin(spec: ModelSpec, crop_size: int | None = None) -> int:
    """How far (pixels) :func:`dense_image_features` reaches from a pixel: pad a map by this
    much and its inner pixels do not depend on the map's edges."""
    encoder: EncoderSpec = spec.image_encoder
    size = crop_size or spec.crop_size
    if encoder.padding == "valid":  # a pixel reads its own crop only
        return size // 2
    grid = _Grid(size, 1, size // 2)
    norm = lambda: grid.window_reach() if encoder.norm_groups else 0
    total = grid.reach(encoder.stem_kernel, encoder.stem_stride)
    grid.advance(encoder.stem_stride)
    total += norm()
    if encoder.stem_pool:
        total += grid.reach(3, 2)
        grid.advance(2)
    for stage, blocks in enumerate(encoder.stage_sizes):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            total += grid.reach(3, stride)
            grid.advance(stride)
            total += 2 * norm() + grid.reach(3, 1)
    return total + grid.window_reach()


@functools.partial(jax.jit, static_argnames=("margin",))
def _encode_image_dense(
    params: PIMCParams, composite: jax.Array, margin: int
) -> tuple[jax.Array, jax.Array]:
    """``(h + 2m, w + 2m, C)`` reflectance → features ``(h·w, F)``, embeddings ``(h·w, D)``."""
    spec = params.spec
    image = normalize_crops(spec, composite[None])[0]
    features = dense_image_features(spec, params.variables, image)
    height, width = composite.shape[0] - 2 * margin, composite.shape[1] - 2 * margin
    features = features[margin : margin + height, margin : margin + width]
    features = features.reshape(height * width, -1)
    head = lambda model, f: model.image_head(f)
    return features, PIMC(spec).apply(params.variables, features, method=head)


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
    fn = functools.partial(_encode_image_dense, params)
    return _row_tiles(composite, dense_margin(params.spec), rows_per_chunk, fn)


@functools.partial(jax.jit, static_argnames=("view", "tower", "margin"))
def _encode_valid_dense(
    params: PIMCParams, frame: jax.Array, margin: int, view: str, tower: int
) -> tuple[jax.Array, jax.Array]:
    """``(h + 2m, w + 2m, C)`` raw frame → features ``(h·w, F)``, embeddings ``(h·w, D)``
    of the ``"valid"`` tower ``tower`` reading image view ``view``."""
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
    fn = functools.partial(_encode_valid_dense, params, view=view, tower=tower)
    margin = params.spec.crop_size // 2  # a pixel reads its own crop only
    features, embeddings = _row_tiles(frame, margin, rows_per_chunk, fn)
    return features, embeddings, dense_crops_valid(frame, params.spec.crop_size)
