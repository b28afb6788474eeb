"""Geometry of the windowed dense pass of towers with zero padding (``padding="same"``).

A ``"same"`` tower (the paper's ResNet) zero-pads every convolution inside its crop, so
no pass over a whole raster can give every pixel exactly its crop's features. The
windowed pass approximates them with the tower's own parameters
(:meth:`pimc_jax.models.ResNetEncoder.__call__` with ``dense_crop``); it differs from
the per-crop pass in two ways only:

1. convolutions near a crop's edge see the real neighbouring pixels where the crop sees
   zero padding;
2. GroupNorm statistics at a position are those of the crop-sized window centred on it,
   where every position of a crop shares the crop's statistics.

Strided layers keep every pixel's sampling grid (they run at full resolution with the
following kernels dilated by the accumulated stride), so nothing else changes;
``bench/dense_encode.py`` measures the agreement. :class:`Grid` says where one layer's
positions of a crop lie around the pixel the crop is centred on and gives the dense
forms of the operations on them (padding of a convolution, max-pool, the mean over a
crop's positions); :func:`dense_margin` says how far the pass reaches.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from pimc_jax import valid_tower


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of XLA's ``"SAME"`` along an axis of ``size`` positions."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclasses.dataclass(frozen=True)
class Grid:
    """Where one layer's map of a crop lies in a dense map, along either axis: ``count``
    positions, ``dilation`` pixels apart, the first ``offset`` pixels before the pixel the
    crop is centred on (``crop_size // 2`` for every layer: position 0 is crop pixel 0)."""

    count: int
    dilation: int = 1
    offset: int = 0

    @classmethod
    def of_crop(cls, crop_size: int) -> Grid:
        """The input's grid: every pixel of a ``crop_size`` crop."""
        return cls(crop_size, 1, crop_size // 2)

    def window(self, kernel: int, stride: int = 1) -> Grid:
        """After a ``"SAME"`` layer of ``stride`` (any kernel): ``⌈count / stride⌉``
        positions, ``stride`` times further apart."""
        del kernel  # "SAME" keeps position 0 on crop pixel 0 whatever the kernel
        return Grid(-(-self.count // stride), self.dilation * stride, self.offset)

    def conv_padding(self, kernel: int, stride: int) -> list[tuple[int, int]]:
        """Padding, for both spatial axes, of the dense form of the crop's ``"SAME"``
        ``kernel × kernel`` convolution of ``stride`` (stride 1, kernel dilated by
        ``dilation``): output pixel ``q`` reads the input positions that the crop's
        output at ``q``'s position reads."""
        before, _ = same_padding(self.count, kernel, stride)
        d = self.dilation
        return [(before * d, (kernel - 1 - before) * d)] * 2

    def max_pool(self, x: jax.Array) -> jax.Array:
        """The crop's 3×3 stride-2 ``"SAME"`` max-pool at every position of ``x``
        ``(N, H, W, C)`` (``-inf`` beyond the edges)."""
        before, _ = same_padding(self.count, 3, 2)
        return valid_tower.dense_max_pool(x, self.dilation, before)

    def mean(self, x: jax.Array) -> jax.Array:
        """At every pixel of ``x`` ``(N, H, W, C)``, the mean over the ``count²`` positions
        of the crop centred on it (zeros beyond the map's edges)."""
        for axis in (1, 2):
            x = valid_tower.shift_sum(x, axis, self.count, self.dilation, -self.offset)
        return x / self.count**2

    def reach(self, kernel: int, stride: int) -> int:
        """How far (pixels) the dense form of a ``kernel``/``stride`` layer reads from a pixel."""
        before, _ = same_padding(self.count, kernel, stride)
        return max(before, kernel - 1 - before) * self.dilation

    def window_reach(self) -> int:
        """How far (pixels) :meth:`mean` reads from a pixel."""
        return max(self.offset, (self.count - 1) * self.dilation - self.offset)


def dense_margin(encoder: Any, crop_size: int) -> int:
    """How far (pixels) the windowed dense pass of ``encoder`` (an ``EncoderSpec`` or a
    ``ResNetEncoder`` with ``padding="same"``) reaches from a pixel: pad a map by this much
    and its inner pixels do not depend on the map's edges."""
    grid = Grid.of_crop(crop_size)
    norm = lambda: grid.window_reach() if encoder.norm_groups else 0
    total = grid.reach(encoder.stem_kernel, encoder.stem_stride)
    grid = grid.window(encoder.stem_kernel, encoder.stem_stride)
    total += norm()
    if encoder.stem_pool:
        total += grid.reach(3, 2)
        grid = grid.window(3, 2)
    for stage, blocks in enumerate(encoder.stage_sizes):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            total += grid.reach(3, stride)
            grid = grid.window(3, stride)
            total += 2 * norm() + grid.reach(3, 1)
    return total + grid.window_reach()
