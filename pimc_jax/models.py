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
import ml_collections
import numpy as np

from pimc_jax import defaults
from pimc_jax.data.radar import check_multilook
from pimc_jax.data.views import PLOT_VIEWS, S1_VIEWS, VIEWS, check_views
from pimc_jax.indices import (
    BAND_TABLES,
    resolve_image_bands,
    resolve_indices,
    resolve_radar_indices,
)
from pimc_jax.recurrence import PLOT_SPANS, check_plot_channels

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str) -> Any:
    """Maps a config string (``float32``/``bfloat16``/``float16``) to a JAX dtype."""
    if name not in _DTYPES:
        raise ValueError(f"Unknown compute dtype {name!r}; expected one of {sorted(_DTYPES)}")
    return _DTYPES[name]


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
    """

    width: int
    strides: int = 1
    norm_groups: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        plain = self.norm_groups == 0
        conv = lambda w, k, s, name: nn.Conv(
            w, (k, k), (s, s), use_bias=plain, dtype=self.dtype, name=name
        )

        def norm(name: str, zero: bool = False) -> Callable[[jax.Array], jax.Array]:
            if plain:
                if not zero:
                    return lambda y: y
                scale = self.param(name, nn.initializers.zeros, (self.width,), jnp.float32)
                return lambda y: y * scale.astype(self.dtype)
            return GroupNorm(
                num_groups=_groups(self.width, self.norm_groups),
                dtype=self.dtype,
                scale_init=nn.initializers.zeros if zero else nn.initializers.ones,
                name=name,
            )

        residual = x
        y = nn.relu(norm("norm1")(conv(self.width, 3, self.strides, "conv1")(x)))
        # Zero-initialised last scale: each block starts as the identity.
        y = norm("norm2", zero=True)(conv(self.width, 3, 1, "conv2")(y))
        if residual.shape != y.shape:
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
      input_means: append each input channel's mean over space to the pooled features,
        giving back what GroupNorm takes out: a level plot's mean is its series' mean, a
        distance plot's the mean change between dates, a crop band's its mean reflectance.
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
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``(N, H, W, C)`` float → ``(N, F)`` float32 pooled features, ``F = widths[-1]``
        (``+ C`` with ``input_means``)."""
        chex.assert_rank(x, 4)
        if len(self.stage_sizes) != len(self.widths):
            raise ValueError(
                f"stage_sizes {tuple(self.stage_sizes)} and widths {tuple(self.widths)} "
                "must have the same length"
            )
        means = jnp.mean(x.astype(jnp.float32), axis=(1, 2)) if self.input_means else None
        x = x.astype(self.dtype)
        k, s = self.stem_kernel, self.stem_stride
        plain = self.norm_groups == 0
        x = nn.Conv(self.stem_width, (k, k), (s, s), use_bias=plain, dtype=self.dtype)(x)
        if not plain:
            groups = _groups(self.stem_width, self.norm_groups)
            x = GroupNorm(num_groups=groups, dtype=self.dtype)(x)
        x = nn.relu(x)
        if self.stem_pool:
            x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
        for stage, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            for block in range(blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                x = ResidualBlock(width, strides, self.norm_groups, self.dtype)(x)
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


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """Hashable hyper-parameters of one :class:`ResNetEncoder`."""

    stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    stem_kernel: int = 3
    stem_stride: int = 1
    stem_pool: bool = False
    norm_groups: int = 32
    input_means: bool = False  # what a checkpoint without the field holds

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderSpec:
        """From a dict of its fields (lists from JSON or a config become tuples)."""
        return cls(**{key: _tuple(value) for key, value in values.items()})


# ModelSpec's defaults are the library's (pimc_jax.defaults), for PASTIS's ten bands.
_MODEL = defaults.model_config()
_DATA = defaults.data_config()
_BAND_NAMES = tuple(BAND_TABLES["pastis"])
# ``model`` keys copied as they are into the spec fields of the same name.
# model.rp_size = 0 ("auto"): one plot step per acquisition of the median pixel, within
# these bounds (12 monthly composites → 12, 23 MODIS 16-day composites → 23, 60 irregular
# Sentinel-2 dates → 24); without a series to count, FALLBACK_RP_SIZE.
AUTO_RP_SIZE_RANGE: tuple[int, int] = (8, 24)
FALLBACK_RP_SIZE: int = 12


def auto_rp_size(series_length: float | None) -> int:
    """The plot size ``S`` of ``model.rp_size = 0`` for series of ``series_length`` dates.

    ``series_length``: the acquisitions of a typical pixel (the median over the data), or
    None when the data hold no series (then :data:`FALLBACK_RP_SIZE`).
    """
    if series_length is None or not np.isfinite(series_length):
        return FALLBACK_RP_SIZE
    low, high = AUTO_RP_SIZE_RANGE
    return int(np.clip(round(float(series_length)), low, high))


_SCALAR_MODEL_KEYS: tuple[str, ...] = (
    "embedding_dim",
    "learnable_temperature",
    "temperature",
    "dtype",
    "rp_size",
    "rp_normalize",
    "rp_dimension",
    "rp_time_delay",
    "rp_threshold",
    "rp_percentage",
)
# What a checkpoint written before a field existed meant by leaving it out.
LEGACY_SPEC_FIELDS: dict[str, Any] = {
    "rp_channels": ("distance",),
    "rp_span": "valid",
    "views": ("s2_rp", "s2_image"),
    "s1_band_names": (),
    "s1_indices": (),
    "s1_image_bands": (),
    "s1_image_mean": (),
    "s1_image_std": (),
    "s1_multilook": 1,
}
# The towers by parameter-tree name, in the order of ``ModelSpec.views``.
TOWERS: tuple[str, ...] = ("rp", "image")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything static that defines a PIMC model and its input preprocessing.

    It travels with the parameters (:class:`pimc_jax.encode.PIMCParams`) and is
    saved beside every checkpoint, so a checkpoint alone is enough to embed data.

    Attributes:
      rp_encoder / image_encoder: the two backbones.
      head_hidden_dims / embedding_dim: the projection heads (same for both towers).
      learnable_temperature: learn τ as a clipped log-scale, else keep it fixed.
      temperature: initial (or fixed) τ. max_logit_scale: clip of 1/τ.
      dtype: compute dtype name.
      band_names: band order of the raw series the model expects.
      indices: spectral indices turned into recurrence plots, in channel order.
      reflectance_scale: raw series are divided by it to give reflectance.
      rp_size: S, the series are resampled to S regular steps → S×S plots.
      rp_normalize / rp_dimension / rp_time_delay / rp_threshold / rp_percentage:
        recurrence-plot options (:func:`pimc_jax.recurrence.recurrence_plot`).
      rp_channels: plot kinds per index (:data:`pimc_jax.recurrence.PLOT_CHANNELS`);
        ``("distance",)`` is the paper's plot (and what a checkpoint without the field has,
        :data:`LEGACY_SPEC_FIELDS`).
      rp_span: what the resampled time axis spans (:data:`pimc_jax.recurrence.PLOT_SPANS`):
        each pixel's counted dates (``"valid"``, the paper's) or its acquisitions.

    The defaults are the library's (:mod:`pimc_jax.defaults`), for PASTIS's ten bands:
    ``ModelSpec()`` is the model a default run of ``configs/pretrain.py`` builds.
      image_bands: bands of the image view, in channel order.
      crop_size: k of the k×k image crops.
      image_mean / image_std: per-band statistics used to normalise image crops.
      views: the view feeding tower 1 (``rp_encoder``/``rp_head``) and tower 2
        (``image_encoder``/``image_head``), from :data:`pimc_jax.data.views.VIEWS`; the
        parameter names stay the same whatever the views (``("s2_rp", "s2_image")``, the
        paper's pair, is what a checkpoint without the field holds).
      s1_band_names: channel names of the Sentinel-1 data (``()`` without S1 views).
      s1_indices: radar series of an ``s1_rp`` view (:data:`pimc_jax.indices.RADAR_INDEX_NAMES`).
      s1_image_bands / s1_image_mean / s1_image_std: channels of an ``s1_image`` view and
        their dB statistics (crops are standardised with them).
      s1_multilook: odd side of the window whose linear-power mean each date of an
        ``s1_rp`` series was (:func:`pimc_jax.data.radar.pixel_s1_series`, setting
        ``data.s1_multilook``); 1 = the pixel alone (what a checkpoint without the field
        holds). Dense encoding builds the series the same way.
    """

    rp_encoder: EncoderSpec = EncoderSpec.from_dict(_MODEL.rp_encoder.to_dict())
    image_encoder: EncoderSpec = EncoderSpec.from_dict(_MODEL.image_encoder.to_dict())
    head_hidden_dims: tuple[int, ...] = tuple(_MODEL.head_hidden_dims)
    embedding_dim: int = _MODEL.embedding_dim
    learnable_temperature: bool = _MODEL.learnable_temperature
    temperature: float = _MODEL.temperature
    max_logit_scale: float = 100.0
    dtype: str = _MODEL.dtype
    band_names: tuple[str, ...] = _BAND_NAMES
    indices: tuple[str, ...] = resolve_indices(_MODEL.indices, _BAND_NAMES)
    reflectance_scale: float = 1.0
    rp_size: int = _MODEL.rp_size or FALLBACK_RP_SIZE
    rp_normalize: bool = _MODEL.rp_normalize
    rp_dimension: int = _MODEL.rp_dimension
    rp_time_delay: int = _MODEL.rp_time_delay
    rp_threshold: str | float | None = _MODEL.rp_threshold
    rp_percentage: float = _MODEL.rp_percentage
    rp_channels: tuple[str, ...] = tuple(_MODEL.rp_channels)
    rp_span: str = _MODEL.rp_span
    image_bands: tuple[str, ...] = resolve_image_bands(_DATA.image_bands, _BAND_NAMES)
    crop_size: int = _DATA.crop_size
    image_mean: tuple[float, ...] = (0.0,) * len(image_bands)
    image_std: tuple[float, ...] = (1.0,) * len(image_bands)
    views: tuple[str, ...] = tuple(_MODEL.views)
    s1_band_names: tuple[str, ...] = ()
    s1_indices: tuple[str, ...] = ()
    s1_image_bands: tuple[str, ...] = ()
    s1_image_mean: tuple[float, ...] = ()
    s1_image_std: tuple[float, ...] = ()
    s1_multilook: int = _DATA.s1_multilook

    def __post_init__(self) -> None:
        check_views(self.views, "ModelSpec.views")
        # An odd int (data.s1_multilook's check), stored as a Python int (JSON-able).
        object.__setattr__(self, "s1_multilook", check_multilook(self.s1_multilook))
        if "s1_rp" in self.views and not self.s1_indices:
            raise ValueError("ModelSpec.s1_indices is empty, but a tower reads the s1_rp view")
        if "s1_image" in self.views and not self.s1_image_bands:
            raise ValueError(
                "ModelSpec.s1_image_bands is empty, but a tower reads the s1_image view"
            )
        if len(self.s1_image_mean) != len(self.s1_image_bands) or len(self.s1_image_std) != len(
            self.s1_image_bands
        ):
            raise ValueError(
                f"s1_image_mean ({len(self.s1_image_mean)}) and s1_image_std "
                f"({len(self.s1_image_std)}) need one value per S1 image band "
                f"{self.s1_image_bands}"
            )
        if len(self.image_mean) != len(self.image_bands) or len(self.image_std) != len(
            self.image_bands
        ):
            raise ValueError(
                f"image_mean ({len(self.image_mean)}) and image_std ({len(self.image_std)}) "
                f"need one value per image band {self.image_bands}"
            )
        check_plot_channels(self.rp_channels)
        if self.rp_span not in PLOT_SPANS:
            raise ValueError(f"rp_span must be one of {PLOT_SPANS}, got {self.rp_span!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        compute_dtype(self.dtype)

    @property
    def rp_plot_size(self) -> int:
        """Side of the recurrence plot after time-delay embedding."""
        return self.rp_size - (self.rp_dimension - 1) * self.rp_time_delay

    @property
    def rp_input_channels(self) -> int:
        """Channels of an ``s2_rp`` view: one plot per index and plot kind."""
        return len(self.indices) * len(self.rp_channels)

    def feature_dim(self, tower: str) -> int:
        """``F``, the width of ``tower``'s backbone features (``"rp"`` or ``"image"``)."""
        view = self.tower_view(tower)  # checks the name
        encoder = self.rp_encoder if tower == "rp" else self.image_encoder
        extra = self.view_input_shape(view)[-1] if encoder.input_means else 0
        return encoder.widths[-1] + extra

    def tower_view(self, tower: str) -> str:
        """The view feeding ``tower`` (``"rp"``: tower 1, ``"image"``: tower 2)."""
        if tower not in TOWERS:
            raise ValueError(f"tower must be one of {TOWERS}, got {tower!r}")
        return self.views[TOWERS.index(tower)]

    def plot_towers(self, sensor: str | None = None) -> tuple[str, ...]:
        """Towers fed recurrence plots (of ``sensor`` ``"s1"``/``"s2"`` only, if given)."""
        return tuple(
            tower
            for tower, view in zip(TOWERS, self.views, strict=True)
            if view in PLOT_VIEWS and (sensor is None or view.startswith(sensor + "_"))
        )

    @property
    def uses_s1(self) -> bool:
        """Whether a tower reads Sentinel-1 data."""
        return any(view in S1_VIEWS for view in self.views)

    def view_input_shape(self, view: str) -> tuple[int, int, int]:
        """``(H, W, C)`` of one sample of ``view``'s model input."""
        if view == "s2_rp":
            return (self.rp_plot_size, self.rp_plot_size, self.rp_input_channels)
        if view == "s1_rp":
            channels = len(self.s1_indices) * len(self.rp_channels)
            return (self.rp_plot_size, self.rp_plot_size, channels)
        if view == "s2_image":
            return (self.crop_size, self.crop_size, len(self.image_bands))
        if view == "s1_image":
            return (self.crop_size, self.crop_size, len(self.s1_image_bands))
        raise ValueError(f"unknown view {view!r}; choose from {VIEWS}")

    @classmethod
    def from_config(
        cls,
        config: ml_collections.ConfigDict,
        *,
        band_names: Sequence[str],
        image_mean: Sequence[float],
        image_std: Sequence[float],
        s1_band_names: Sequence[str] = (),
        s1_image_mean: Sequence[float] = (),
        s1_image_std: Sequence[float] = (),
        series_length: float | None = None,
    ) -> ModelSpec:
        """The spec a run builds from ``config.model`` / ``config.data`` and facts of its data.

        ``model.rp_size = 0`` is resolved here to :func:`auto_rp_size` of ``series_length``
        (the median pixel's number of acquisitions in the data).

        ``model.indices`` may be ``"auto"``: it is resolved here, against ``band_names``
        (:func:`pimc_jax.indices.resolve_indices`), so the spec always lists concrete indices;
        likewise ``model.s1_indices`` against ``s1_band_names`` when a tower reads ``s1_rp``.
        The S1 fields are filled only when a tower reads Sentinel-1 (else ``()``, so a
        Sentinel-2-only spec equals one written before they existed), except
        ``s1_multilook``, always ``data.s1_multilook`` (read by ``s1_rp`` views only; a
        config without the key gets 1, as the data pipeline does).
        """
        model = config.model
        views = check_views(model.get("views", LEGACY_SPEC_FIELDS["views"]), "config.model.views")
        s1: dict[str, Any] = {}
        if any(view in S1_VIEWS for view in views):
            s1["s1_band_names"] = tuple(s1_band_names)
        if "s1_rp" in views:
            s1["s1_indices"] = resolve_radar_indices(
                tuple(model.get("s1_indices", ("auto",))), tuple(s1_band_names)
            )
        if "s1_image" in views:
            s1["s1_image_bands"] = tuple(config.data.s1_image_bands)
            s1["s1_image_mean"] = tuple(float(v) for v in s1_image_mean)
            s1["s1_image_std"] = tuple(float(v) for v in s1_image_std)
        return cls(
            rp_encoder=EncoderSpec.from_dict(model.rp_encoder.to_dict()),
            image_encoder=EncoderSpec.from_dict(model.image_encoder.to_dict()),
            head_hidden_dims=tuple(model.head_hidden_dims),
            **{name: model[name] for name in _SCALAR_MODEL_KEYS if name != "rp_size"},
            rp_size=model.rp_size or auto_rp_size(series_length),
            band_names=tuple(band_names),
            indices=resolve_indices(model.indices, band_names),
            reflectance_scale=1.0,
            # A config written before the key existed means what such a checkpoint means.
            rp_channels=tuple(model.get("rp_channels", LEGACY_SPEC_FIELDS["rp_channels"])),
            rp_span=model.get("rp_span", LEGACY_SPEC_FIELDS["rp_span"]),
            image_bands=resolve_image_bands(config.data.image_bands, band_names),
            crop_size=config.data.crop_size,
            image_mean=tuple(float(v) for v in image_mean),
            image_std=tuple(float(v) for v in image_std),
            views=views,
            s1_multilook=config.data.get("s1_multilook", LEGACY_SPEC_FIELDS["s1_multilook"]),
            **s1,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict` (lists from JSON become tuples)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"Unknown ModelSpec fields {sorted(unknown)}")
        converted = {}
        for key, value in {**LEGACY_SPEC_FIELDS, **values}.items():
            if key in ("rp_encoder", "image_encoder"):
                value = EncoderSpec.from_dict(value)
            converted[key] = _tuple(value)
        return cls(**converted)


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
