"""Flax (Linen) towers of PIMC: ResNet encoders, projection heads, the two-tower model.

Design choices the paper leaves open, made here:

* **GroupNorm instead of BatchNorm.** Contrastive training with per-device
  BatchNorm lets a model "cheat" through batch statistics and needs cross-device
  synchronisation; GroupNorm has neither problem and keeps the model a pure
  function of ``params`` (no mutable ``batch_stats``), which is what
  :func:`pimc_jax.encode` takes.
* **A small-input stem.** Recurrence plots (S×S, default 32) and image crops
  (32×32) are tiny next to ImageNet images, so the default stem is a 3×3 stride-1
  convolution without max-pooling (CIFAR-style); ``stem_stride=2, stem_pool=True``
  with ``stem_kernel=7`` gives the ImageNet stem.
* **Two paddings, one module for crops and rasters.** ``padding="same"`` (the default,
  the paper's ResNet) zero-pads every convolution inside the crop. ``padding="valid"``
  pads nothing, normalises each position over its own channels (LayerNorm) and crops
  the residual path. Either module also runs *densely* over a whole raster
  (``dense_crop=k``, the same parameters): at every pixel the ``k×k`` crop's features,
  exactly for ``"valid"`` (:mod:`pimc_jax.valid_tower`), approximately for ``"same"``
  (:mod:`pimc_jax.windowed`).

The hashable specs (:class:`EncoderSpec`, :class:`ModelSpec`) are in :mod:`pimc_jax.spec`
and re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from pimc_jax import valid_tower, windowed
from pimc_jax.spec import (  # noqa: F401  (re-exported: the specs' historical home)
    AUTO_RP_SIZE_RANGE,
    FALLBACK_RP_SIZE,
    LEGACY_SPEC_FIELDS,
    TOWERS,
    EncoderSpec,
    ModelSpec,
    auto_rp_size,
    compute_dtype,
)


def _groups(channels: int, max_groups: int) -> int:
    """Largest divisor of ``channels`` that is at most ``max_groups``."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


class GroupNorm(nn.Module):
    """Group normalisation, a drop-in for ``flax.linen.GroupNorm`` that is faster on CPU.

    Same parameters (``scale`` and ``bias``, float32 ``(C,)``), same statistics (mean and
    ``E[x²] − E[x]²`` over all axes but the batch axis and each group's channels, in
    float32, variance clipped at 0) and the same result within float32 rounding (checked
    against Flax in ``tests/test_dense_encode.py``). The moments are summed over space
    per channel first and then over each group's channels, which keeps the channels as
    the contiguous axis of every pass (Flax reduces a ``(..., groups, C / groups)`` view
    in one go, which XLA's CPU backend runs several times slower).
    """

    num_groups: int
    epsilon: float = 1e-6
    dtype: Any = None
    scale_init: Callable[..., jax.Array] = nn.initializers.ones
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array, window: windowed.Grid | None = None) -> jax.Array:
        """``(N, ..., C)`` → ``(N, ..., C)`` in ``dtype`` (default: ``x``'s dtype).

        ``window`` (an ``(N, H, W, C)`` dense map of crops, :mod:`pimc_jax.windowed`): each
        position's statistics are those of the crop centred on it, not of the whole map.
        """
        channels = x.shape[-1]
        if channels % self.num_groups:
            raise ValueError(f"{channels} channels do not split into {self.num_groups} groups")
        size = channels // self.num_groups
        scale = self.param("scale", self.scale_init, (channels,), jnp.float32)
        bias = self.param("bias", self.bias_init, (channels,), jnp.float32)
        values = x.astype(jnp.float32)
        if window is None:  # over all positions of each sample
            axes = tuple(range(1, x.ndim - 1))
            count = float(np.prod(x.shape[1:-1])) * size
            shape = (x.shape[0],) + (1,) * len(axes) + (channels,)

            def group_mean(y: jax.Array) -> jax.Array:  # (N, ..., C) → (N, groups)
                return jnp.sum(y, axis=axes).reshape(-1, self.num_groups, size).sum(-1) / count

        else:  # over the crop centred on each position
            shape = x.shape

            def group_mean(y: jax.Array) -> jax.Array:  # (N, H, W, C) → (N, H, W, groups)
                return window.mean(y.reshape(*y.shape[:-1], self.num_groups, size).mean(-1))

        mean = group_mean(values)
        var = jnp.maximum(group_mean(values * values) - mean * mean, 0.0)
        per_channel = lambda g: jnp.repeat(g, size, axis=-1).reshape(shape)
        mul = per_channel(jax.lax.rsqrt(var + self.epsilon)) * scale
        return ((values - per_channel(mean)) * mul + bias).astype(self.dtype or x.dtype)


class ResidualBlock(nn.Module):
    """Basic (two 3×3 convolutions) residual block, ResNet-18/34 style.

    ``norm_groups=0``: no normalisation; the residual branch ends in a per-channel scale
    initialised to zero instead (so each block still starts as the identity).
    ``padding="valid"``: no zero padding; the norms are LayerNorms over each position's
    channels, and the residual path is cropped to the positions the branch keeps (through
    the 1×1 projection when the stride or width changes). Called with ``grid`` (where the
    input's positions of a crop lie: :class:`pimc_jax.valid_tower.Grid` or
    :class:`pimc_jax.windowed.Grid`) it runs densely over a whole raster with the same
    parameters: stride 1 at full resolution with kernels dilated instead, and for a
    ``"same"`` block GroupNorm statistics over each position's crop.
    """

    width: int
    strides: int = 1
    norm_groups: int = 32
    dtype: Any = jnp.float32
    padding: str = "same"

    @nn.compact
    def __call__(self, x: jax.Array, grid: Any = None) -> jax.Array:
        plain = self.norm_groups == 0
        valid = self.padding == "valid"
        dense = grid is not None
        after = grid.window(3, self.strides) if dense else None  # the branch's grid

        def conv(w: int, k: int, s: int, name: str, on: Any = None) -> nn.Conv:
            if on is not None:  # dense: stride 1, the crop's grid ``on`` as a dilation
                d = (on.dilation,) * 2
                padding = on.conv_padding(k, s)
                return nn.Conv(
                    w, (k, k), (1, 1), padding, kernel_dilation=d, use_bias=plain,
                    dtype=self.dtype, name=name,
                )  # fmt: skip
            padding = "VALID" if valid else "SAME"
            return nn.Conv(w, (k, k), (s, s), padding, use_bias=plain, dtype=self.dtype, name=name)

        def norm(name: str, zero: bool = False) -> Callable[[jax.Array], jax.Array]:
            if plain:
                if not zero:
                    return lambda y: y
                scale = self.param(name, nn.initializers.zeros, (self.width,), jnp.float32)
                return lambda y: y * scale.astype(self.dtype)
            init = nn.initializers.zeros if zero else nn.initializers.ones
            if valid:
                return nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, scale_init=init, name=name)
            groups = _groups(self.width, self.norm_groups)
            module = GroupNorm(num_groups=groups, dtype=self.dtype, scale_init=init, name=name)
            return lambda y: module(y, after) if dense else module(y)

        residual = x
        y = nn.relu(norm("norm1")(conv(self.width, 3, self.strides, "conv1", grid)(x)))
        # Zero-initialised last scale: each block starts as the identity.
        y = norm("norm2", zero=True)(conv(self.width, 3, 1, "conv2", after)(y))
        if valid:
            if not dense:  # the input positions the branch's outputs are centred on
                first, step, count = self.strides + 1, self.strides, y.shape[1]
                rows = slice(first, first + step * (count - 1) + 1, step)
                cols = slice(first, first + step * (y.shape[2] - 1) + 1, step)
                residual = residual[:, rows, cols]
            if self.strides != 1 or x.shape[-1] != self.width:
                # A 1×1 window at each kept position: the same on crops and densely.
                residual = norm("proj_norm")(conv(self.width, 1, 1, "proj_conv")(residual))
        elif (grid.count != after.count if dense else residual.shape[1:3] != y.shape[1:3]) or (
            x.shape[-1] != self.width
        ):
            project = conv(self.width, 1, self.strides, "proj_conv", grid)
            residual = norm("proj_norm")(project(residual))
        return nn.relu(residual + y)


class ResNetEncoder(nn.Module):
    """ResNet backbone with global average pooling.

    Attributes:
      stage_sizes: residual blocks per stage; ``(2, 2, 2, 2)`` is ResNet-18.
      widths: channels per stage; ``(64, 128, 256, 512)`` is ResNet-18.
      stem_width / stem_kernel / stem_stride / stem_pool: the input stem.
      norm_groups: GroupNorm groups (capped at the channel count); 0 = no normalisation
        (GroupNorm takes each sample's mean and scale out of its feature maps, so a plot
        tower with it cannot see the level or the amplitude of a series, only its shape).
        With ``padding="valid"`` any positive value means a LayerNorm over each position's
        channels instead (statistics over space would break exact dense encoding).
      input_means: append each input channel's mean over space to the pooled features,
        giving back what GroupNorm takes out: a level plot's mean is its series' mean, a
        distance plot's the mean change between dates, a crop band's its mean reflectance.
      padding: ``"same"`` (zero padding inside the input, the paper's ResNet) or
        ``"valid"`` (none; the dense pass is then exact, see ``__call__``).
      dtype: compute dtype; parameters stay float32.
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    widths: Sequence[int] = (64, 128, 256, 512)
    stem_width: int = 64
    stem_kernel: int = 3
    stem_stride: int = 1
    stem_pool: bool = False
    norm_groups: int = 32
    input_means: bool = False
    padding: str = "same"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, dense_crop: int | None = None, pool: bool = True) -> jax.Array:
        """``(N, H, W, C)`` float → ``(N, F)`` float32 pooled features, ``F = widths[-1]``
        (``+ C`` with ``input_means``).

        ``dense_crop=k``: ``x`` is a whole raster and the result ``(N, H, W, F)`` holds at
        every pixel the features of the ``k × k`` crop centred on it (centre at crop pixel
        ``k // 2``), in one fully convolutional pass with the same parameters. With
        ``padding="valid"`` they equal the per-crop call up to float rounding; with
        ``"same"`` they approximate it (:mod:`pimc_jax.windowed`: real neighbours instead
        of zero padding, GroupNorm statistics of each position's crop window). Pixels near
        the edges read zeros beyond them: pad the raster (reflecting, as crops are) by
        ``k // 2`` (valid) or :func:`pimc_jax.windowed.dense_margin` (same) and drop the
        border. ``pool=False`` (``"same"`` only) returns the last stage's map ``(N, H, W,
        widths[-1])`` before the final average instead: at a pixel, what the crop centred
        there has at the pixel's own grid position.
        """
        chex.assert_rank(x, 4)
        if len(self.stage_sizes) != len(self.widths):
            raise ValueError(
                f"stage_sizes {tuple(self.stage_sizes)} and widths {tuple(self.widths)} "
                "must have the same length"
            )
        if self.padding not in valid_tower.PADDINGS:
            raise ValueError(f"padding must be one of {valid_tower.PADDINGS}, got {self.padding!r}")
        valid = self.padding == "valid"
        dense = dense_crop is not None
        if not pool and not (dense and not valid):
            raise ValueError("pool=False is for the dense pass of towers with padding='same'")
        if valid:
            grid = valid_tower.Grid(dense_crop or x.shape[1])
            valid_tower.check_valid_tower(self, grid.count, "ResNetEncoder")
        else:
            grid = windowed.Grid.of_crop(dense_crop) if dense else None

        def crop_mean(y: jax.Array) -> jax.Array:  # (N, H, W, C) → (N, C) or (N, H, W, C)
            if not dense:
                return jnp.mean(y, axis=(1, 2))
            return valid_tower.window_mean(y, grid, dense_crop) if valid else grid.mean(y)

        means = crop_mean(x.astype(jnp.float32)) if self.input_means else None
        x = x.astype(self.dtype)
        k, s = self.stem_kernel, self.stem_stride
        plain = self.norm_groups == 0
        if dense:
            padding, stride, dilation = grid.conv_padding(k, s), 1, grid.dilation
        else:
            padding, stride, dilation = "VALID" if valid else "SAME", s, 1
        x = nn.Conv(
            self.stem_width, (k, k), (stride, stride), padding,
            kernel_dilation=(dilation, dilation), use_bias=plain, dtype=self.dtype,
        )(x)  # fmt: skip
        grid = grid.window(k, s) if grid is not None else None
        if not plain:
            if valid:
                x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
            else:
                groups = _groups(self.stem_width, self.norm_groups)
                norm = GroupNorm(num_groups=groups, dtype=self.dtype)
                x = norm(x, grid) if dense else norm(x)
        x = nn.relu(x)
        if self.stem_pool:
            if dense:
                x = grid.max_pool(x)
            else:
                x = nn.max_pool(x, (3, 3), (2, 2), padding="VALID" if valid else "SAME")
            grid = grid.window(3, 2) if grid is not None else None
        for stage, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            for block in range(blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                block_module = ResidualBlock(
                    width, strides, self.norm_groups, self.dtype, self.padding
                )
                x = block_module(x, grid if dense else None)
                if grid is not None:
                    grid = grid.window(3, strides).window(3, 1)
        if not pool:
            return x.astype(jnp.float32)
        if dense:
            pooled = crop_mean(x.astype(jnp.float32))
        else:
            pooled = jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
        return pooled if means is None else jnp.concatenate([pooled, means], axis=-1)


class ProjectionHead(nn.Module):
    """MLP projection to the contrastive space, output L2-normalised.

    ``hidden_dims=(512,)``, ``output_dim=128`` on 512-d features is the
    512 → 512 → 128 head of the paper's setup.
    """

    hidden_dims: Sequence[int] = (512,)
    output_dim: int = 128
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        """``(N, F)`` → ``(N, output_dim)`` float32 with unit L2 norm per row."""
        chex.assert_rank(features, 2)
        x = features.astype(self.dtype)
        for width in self.hidden_dims:
            x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
        x = nn.Dense(self.output_dim, dtype=self.dtype)(x).astype(jnp.float32)
        return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


class PIMC(nn.Module):
    """The two-tower PIMC model: tower 1 (``rp_*``) and tower 2 (``image_*``).

    Each tower is a :class:`ResNetEncoder` followed by a :class:`ProjectionHead`.
    The model also owns the contrastive temperature (``logit_scale`` = log 1/τ)
    when it is learnable. ``spec.views`` says which view feeds each tower (by default
    Sentinel-2 recurrence plots and Sentinel-2 crops; the names of the parameters and
    methods stay those of that pair whatever the views).
    """

    spec: ModelSpec

    def setup(self) -> None:
        dtype = compute_dtype(self.spec.dtype)
        self.rp_encoder = ResNetEncoder(**dataclasses.asdict(self.spec.rp_encoder), dtype=dtype)
        self.image_encoder = ResNetEncoder(
            **dataclasses.asdict(self.spec.image_encoder), dtype=dtype
        )
        head = dict(
            hidden_dims=self.spec.head_hidden_dims, output_dim=self.spec.embedding_dim, dtype=dtype
        )
        self.rp_head = ProjectionHead(**head)
        self.image_head = ProjectionHead(**head)
        if self.spec.learnable_temperature:
            init = float(np.log(1.0 / self.spec.temperature))
            self.logit_scale = self.param("logit_scale", nn.initializers.constant(init), ())

    def encode_rp(self, rp: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(N, S, S, K)`` plots → (``(N, F)`` features, ``(N, D)`` unit embeddings)."""
        features = self.rp_encoder(rp)
        return features, self.rp_head(features)

    def encode_image(self, image: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(N, k, k, C)`` normalised crops → (``(N, F)`` features, ``(N, D)`` embeddings)."""
        features = self.image_encoder(image)
        return features, self.image_head(features)

    def encode_dense(self, image: jax.Array, tower: str = "image") -> tuple[jax.Array, jax.Array]:
        """``tower`` (``"rp"`` or ``"image"``) run densely over
        ``(N, H, W, C)`` model inputs (e.g. a normalised raster): at every pixel the
        features ``(N, H, W, F)`` and embeddings ``(N, H, W, D)`` of the ``spec.crop_size``
        crop centred on it (:meth:`ResNetEncoder.__call__`, ``dense_crop``: exact for a
        ``padding="valid"`` tower, windowed for a ``"same"`` one)."""
        if tower not in TOWERS:
            raise ValueError(f"tower must be one of {TOWERS}, got {tower!r}")
        encoder, head = (
            (self.rp_encoder, self.rp_head)
            if tower == "rp"
            else (self.image_encoder, self.image_head)
        )
        features = encoder(image, dense_crop=self.spec.crop_size)
        embeddings = head(features.reshape(-1, features.shape[-1]))
        return features, embeddings.reshape(*features.shape[:-1], -1)

    def temperature(self) -> jax.Array:
        """τ as a float32 scalar (clipped so that 1/τ ≤ ``max_logit_scale``)."""
        if not self.spec.learnable_temperature:
            return jnp.asarray(self.spec.temperature, jnp.float32)
        scale = jnp.minimum(jnp.exp(self.logit_scale), self.spec.max_logit_scale)
        return 1.0 / scale

    def __call__(self, rp: jax.Array, image: jax.Array) -> dict[str, jax.Array]:
        """Both towers: returns ``z_rp`` (N, D), ``z_image`` (N, D), ``temperature`` ()."""
        _, z_rp = self.encode_rp(rp)
        _, z_image = self.encode_image(image)
        return {"z_rp": z_rp, "z_image": z_image, "temperature": self.temperature()}


@flax.struct.dataclass
class PIMCParams:
    """Model variables plus the static spec needed to use them.

    Attributes:
      variables: the Flax variable dict (``{"params": ...}``) of :class:`PIMC`.
      spec: the :class:`ModelSpec` (static: part of the pytree structure).
    """

    variables: Any
    spec: ModelSpec = flax.struct.field(pytree_node=False)


def init_params(spec: ModelSpec, rng: jax.Array | int = 0) -> PIMCParams:
    """Freshly initialised parameters for ``spec``."""
    if isinstance(rng, int):
        rng = jax.random.key(rng)
    rp = jnp.zeros((1, *spec.view_input_shape(spec.views[0])), jnp.float32)
    image = jnp.zeros((1, *spec.view_input_shape(spec.views[1])), jnp.float32)
    variables = jax.jit(PIMC(spec).init)(rng, rp, image)
    return PIMCParams(variables=variables, spec=spec)
