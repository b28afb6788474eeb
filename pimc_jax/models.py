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
* **Two paddings.** ``padding="same"`` (the default, the paper's ResNet) zero-pads every
  convolution inside the crop. ``padding="valid"`` pads nothing, normalises each
  position over its own channels (LayerNorm) and crops the residual path, so the same
  module also runs *densely* over a whole raster (``dense_crop=k``) and gives at every
  pixel exactly its ``k×k`` crop's features (:mod:`pimc_jax.valid_tower`).

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

from pimc_jax import valid_tower
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
    def __call__(self, x: jax.Array) -> jax.Array:
        """``(N, ..., C)`` → ``(N, ..., C)`` in ``dtype`` (default: ``x``'s dtype)."""
        channels = x.shape[-1]
        if channels % self.num_groups:
            raise ValueError(f"{channels} channels do not split into {self.num_groups} groups")
        size = channels // self.num_groups
        scale = self.param("scale", self.scale_init, (channels,), jnp.float32)
        bias = self.param("bias", self.bias_init, (channels,), jnp.float32)
        values = x.astype(jnp.float32)
        axes = tuple(range(1, x.ndim - 1))
        count = float(np.prod(x.shape[1:-1])) * size

        def group_mean(y: jax.Array) -> jax.Array:  # (N, ..., C) → (N, groups)
            return jnp.sum(y, axis=axes).reshape(-1, self.num_groups, size).sum(-1) / count

        mean = group_mean(values)
        var = jnp.maximum(group_mean(values * values) - mean * mean, 0.0)
        shape = (x.shape[0],) + (1,) * len(axes) + (channels,)
        per_channel = lambda g: jnp.repeat(g, size, axis=-1).reshape(shape)
        mul = per_channel(jax.lax.rsqrt(var + self.epsilon)) * scale
        return ((values - per_channel(mean)) * mul + bias).astype(self.dtype or x.dtype)


class ResidualBlock(nn.Module):
    """Basic (two 3×3 convolutions) residual block, ResNet-18/34 style.

    ``norm_groups=0``: no normalisation; the residual branch ends in a per-channel scale
    initialised to zero instead (so each block still starts as the identity).
    ``padding="valid"``: no zero padding; the norms are LayerNorms over each position's
    channels, and the residual path is cropped to the positions the branch keeps (through
    the 1×1 projection when the stride or width changes). Called with ``dilation`` (the
    pixel spacing of the input's grid) it runs densely: stride 1 at full resolution with
    kernels dilated instead (:mod:`pimc_jax.valid_tower`), the same parameters.
    """

    width: int
    strides: int = 1
    norm_groups: int = 32
    dtype: Any = jnp.float32
    padding: str = "same"

    @nn.compact
    def __call__(self, x: jax.Array, dilation: int | None = None) -> jax.Array:
        plain = self.norm_groups == 0
        valid = self.padding == "valid"
        if dilation is not None and not valid:
            raise ValueError("a dense call needs a block with padding='valid'")

        def conv(w: int, k: int, s: int, name: str, d: int = 1) -> nn.Conv:
            if dilation is not None:  # dense: stride 1, the crop's grid as a dilation
                padding = valid_tower.dense_padding(k, d)
                return nn.Conv(
                    w, (k, k), (1, 1), padding, kernel_dilation=(d, d), use_bias=plain,
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
            return GroupNorm(
                num_groups=_groups(self.width, self.norm_groups),
                dtype=self.dtype,
                scale_init=init,
                name=name,
            )

        d = dilation or 1
        residual = x
        y = nn.relu(norm("norm1")(conv(self.width, 3, self.strides, "conv1", d)(x)))
        # Zero-initialised last scale: each block starts as the identity.
        y = norm("norm2", zero=True)(conv(self.width, 3, 1, "conv2", d * self.strides)(y))
        if valid:
            if dilation is None:  # the input positions the branch's outputs are centred on
                first, step, count = self.strides + 1, self.strides, y.shape[1]
                rows = slice(first, first + step * (count - 1) + 1, step)
                cols = slice(first, first + step * (y.shape[2] - 1) + 1, step)
                residual = residual[:, rows, cols]
            if self.strides != 1 or x.shape[-1] != self.width:
                residual = norm("proj_norm")(conv(self.width, 1, 1, "proj_conv")(residual))
        elif residual.shape != y.shape:
            residual = norm("proj_norm")(conv(self.width, 1, self.strides, "proj_conv")(residual))
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
        ``"valid"`` (none; the module then also runs densely, see ``__call__``).
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
    def __call__(self, x: jax.Array, dense_crop: int | None = None) -> jax.Array:
        """``(N, H, W, C)`` float → ``(N, F)`` float32 pooled features, ``F = widths[-1]``
        (``+ C`` with ``input_means``).

        ``dense_crop=k`` (``padding="valid"`` only): ``x`` is a whole raster and the result
        ``(N, H, W, F)`` holds at every pixel the features of the ``k × k`` crop centred on
        it (centre at crop pixel ``k // 2``), equal to the per-crop call up to float
        rounding. Pixels within ``k // 2`` of the edges read zeros beyond them: pad the
        raster by that much (reflecting, as crops are) and drop the border.
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
        if dense_crop is not None and not valid:
            raise ValueError("dense_crop needs a tower with padding='valid'")
        dense = dense_crop is not None
        grid = valid_tower.Grid(dense_crop or x.shape[1])
        if valid:
            valid_tower.check_valid_tower(self, grid.count, "ResNetEncoder")
        means = None
        if self.input_means:
            values = x.astype(jnp.float32)
            means = valid_tower.window_mean(values, grid, grid.count) if dense else None
            means = jnp.mean(values, axis=(1, 2)) if means is None else means
        x = x.astype(self.dtype)
        k, s = self.stem_kernel, self.stem_stride
        plain = self.norm_groups == 0
        if dense:
            padding = valid_tower.dense_padding(k, 1)
            x = nn.Conv(self.stem_width, (k, k), (1, 1), padding, use_bias=plain, dtype=self.dtype)(
                x
            )
        else:
            padding = "VALID" if valid else "SAME"
            x = nn.Conv(self.stem_width, (k, k), (s, s), padding, use_bias=plain, dtype=self.dtype)(
                x
            )
        grid = grid.window(k, s)
        if not plain:
            if valid:
                x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
            else:
                x = GroupNorm(
                    num_groups=_groups(self.stem_width, self.norm_groups), dtype=self.dtype
                )(x)
        x = nn.relu(x)
        if self.stem_pool:
            if dense:
                x = valid_tower.dense_max_pool(x, grid.dilation)
            else:
                x = nn.max_pool(x, (3, 3), (2, 2), padding="VALID" if valid else "SAME")
            grid = grid.window(3, 2)
        for stage, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            for block in range(blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                block_module = ResidualBlock(
                    width, strides, self.norm_groups, self.dtype, self.padding
                )
                x = block_module(x, grid.dilation if dense else None)
                grid = grid.window(3, strides).window(3, 1)
        if dense:
            pooled = valid_tower.window_mean(x.astype(jnp.float32), grid, dense_crop)
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
        """``tower`` (``"rp"`` or ``"image"``, one with ``padding="valid"``) run densely over
        ``(N, H, W, C)`` model inputs (e.g. a normalised raster): at every pixel the
        features ``(N, H, W, F)`` and embeddings ``(N, H, W, D)`` of the ``spec.crop_size``
        crop centred on it (:meth:`ResNetEncoder.__call__`, ``dense_crop``)."""
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
