"""Geometry of towers without padding inside the crop (``EncoderSpec.padding="valid"``).

In such a tower every convolution is ``"VALID"``, so a layer's value at a position of a
crop is one fixed function of the input pixels under that position's receptive field,
whatever crop the position belongs to; no position ever sees zero padding, and the
normalisation (:class:`flax.linen.LayerNorm` over each position's channels) has no
statistics over space. Run over a whole raster, with strided layers at full resolution
and the following kernels dilated by the accumulated stride, the tower therefore computes
at every pixel exactly what any crop computes at a position centred on that pixel. A
pixel's pooled crop features are then the mean of the last map over the positions its
crop's last layer has, a windowed sum: dense encoding is one fully convolutional pass,
exact by construction, and the per-crop pass is its reference.

This module holds the pure geometry (:class:`Grid`: where one layer's positions lie in
the crop; :func:`tower_grid`, :func:`check_valid_tower`, :func:`coverage`) and the dense
forms of the operations that are not convolutions (:func:`window_mean`,
:func:`dense_max_pool`); :class:`pimc_jax.models.ResNetEncoder` uses them in both of its
modes (one module, the same parameters by name).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

# EncoderSpec.padding: "same" (zero padding inside the crop: the paper's ResNet, what a
# checkpoint without the field holds) or "valid" (none: exact dense encoding).
PADDINGS: tuple[str, ...] = ("same", "valid")


@dataclasses.dataclass(frozen=True)
class Grid:
    """Where one layer's map lies in a crop, along either axis.

    ``count`` positions, ``dilation`` pixels apart, the first centred on crop pixel
    ``anchor`` (crop pixel 0 is its first row or column); each position's receptive
    field reaches ``reach`` pixels either side of its centre.
    """

    count: int
    dilation: int = 1
    anchor: int = 0
    reach: int = 0

    def window(self, kernel: int, stride: int = 1) -> Grid:
        """After a ``"VALID"`` ``kernel``-wide window (convolution or pool) of ``stride``:
        output ``j`` is centred on input position ``j·stride + (kernel − 1) / 2``."""
        half = (kernel - 1) // 2
        return Grid(
            count=(self.count - kernel) // stride + 1,
            dilation=self.dilation * stride,
            anchor=self.anchor + half * self.dilation,
            reach=self.reach + half * self.dilation,
        )

    def conv_padding(self, kernel: int, stride: int) -> list[tuple[int, int]]:
        """Padding of the dense form (stride 1, kernel dilated by ``dilation``) of a
        ``"VALID"`` convolution of ``stride`` on this grid (:func:`dense_padding`)."""
        del stride  # the stride shows in the next layer's dilation
        return dense_padding(kernel, self.dilation)

    def max_pool(self, x: jax.Array) -> jax.Array:
        """The dense form of a 3×3 stride-2 ``"VALID"`` max-pool on this grid."""
        return dense_max_pool(x, self.dilation)


def _layers(encoder: Any) -> list[tuple[int, int]]:
    """The ``(kernel, stride)`` windows of a tower, in order (stem, pool, each block's two
    convolutions; a block's 1×1 projection adds no window)."""
    layers = [(encoder.stem_kernel, encoder.stem_stride)]
    if encoder.stem_pool:
        layers.append((3, 2))
    for stage, blocks in enumerate(encoder.stage_sizes):
        for block in range(blocks):
            layers += [(3, 2 if stage > 0 and block == 0 else 1), (3, 1)]
    return layers


def tower_grid(encoder: Any, crop_size: int) -> Grid:
    """The last map's :class:`Grid` of a valid ``encoder`` (an ``EncoderSpec`` or a
    ``ResNetEncoder``) on ``crop_size`` crops."""
    grid = Grid(crop_size)
    for kernel, stride in _layers(encoder):
        grid = grid.window(kernel, stride)
    return grid


def coverage(encoder: Any, crop_size: int) -> tuple[int, int]:
    """First and last crop pixel (inclusive) that the pooled features depend on: the union
    of the last positions' receptive fields. ``(0, crop_size − 1)``: the whole crop."""
    grid = tower_grid(encoder, crop_size)
    last = grid.anchor + (grid.count - 1) * grid.dilation
    return grid.anchor - grid.reach, last + grid.reach


def check_valid_tower(encoder: Any, crop_size: int, what: str) -> None:
    """ValueError (one line) when a valid ``encoder`` cannot run on ``crop_size`` inputs:
    an even kernel (no centre position) or a last map without any position."""
    if encoder.stem_kernel % 2 == 0:
        raise ValueError(
            f"{what}: padding='valid' needs an odd stem_kernel, got {encoder.stem_kernel}"
        )
    if tower_grid(encoder, crop_size).count < 1:
        smallest = next(k for k in range(1, 4096) if tower_grid(encoder, k).count >= 1)
        raise ValueError(
            f"{what}: inputs of {crop_size}x{crop_size} are too small for this padding='valid' "
            f"tower (its last stage would have no position); it needs at least "
            f"{smallest}x{smallest}"
        )


def shift_sum(x: jax.Array, axis: int, count: int, dilation: int, shift: int) -> jax.Array:
    """``out[p] = Σ_{i<count} x[p + shift + i·dilation]`` along ``axis``, zeros beyond the
    edges; same shape as ``x``."""
    length, span = x.shape[axis], (count - 1) * dilation
    low, high = max(0, -shift), max(0, shift + span)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (low, high)
    window, dilations = [1] * x.ndim, [1] * x.ndim
    window[axis], dilations[axis] = count, dilation
    summed = jax.lax.reduce_window(
        jnp.pad(x, pad),
        jnp.zeros((), x.dtype),
        jax.lax.add,
        window,
        (1,) * x.ndim,
        "VALID",
        window_dilation=dilations,
    )
    return jax.lax.slice_in_dim(summed, shift + low, shift + low + length, axis=axis)


def window_mean(x: jax.Array, grid: Grid, crop_size: int) -> jax.Array:
    """Dense global average pool: at every pixel ``p`` of the ``(N, H, W, C)`` map ``x``,
    the mean over the ``grid.count²`` positions the crop centred on ``p`` has in it (crop
    pixel ``crop_size // 2`` is the centre, as in :func:`~pimc_jax.data.views.extract_crops`).
    Pixels whose crop reaches beyond the map read zeros there."""
    shift = grid.anchor - crop_size // 2
    for axis in (1, 2):
        x = shift_sum(x, axis, grid.count, grid.dilation, shift)
    return x / grid.count**2


def dense_max_pool(x: jax.Array, dilation: int, before: int = 1) -> jax.Array:
    """The dense form of a 3×3 max-pool on a grid ``dilation`` pixels apart: the maximum
    over the 3×3 dilated window at every pixel of ``x`` ``(N, H, W, C)``, its first tap
    ``before`` grid steps before the pixel (1: centred, a ``"VALID"`` pool; ``-inf``
    beyond the edges)."""
    pad = (before * dilation, (2 - before) * dilation)
    return jax.lax.reduce_window(
        x,
        jnp.array(-jnp.inf, x.dtype),
        jax.lax.max,
        (1, 3, 3, 1),
        (1, 1, 1, 1),
        [(0, 0), pad, pad, (0, 0)],
        window_dilation=(1, dilation, dilation, 1),
    )


def dense_padding(kernel: int, dilation: int) -> list[tuple[int, int]]:
    """Padding of a dense (stride-1, ``dilation``-dilated) convolution that keeps each
    output centred on its window, for both spatial axes."""
    half = (kernel - 1) // 2 * dilation
    return [(half, half), (half, half)]
