"""Hashable specifications of PIMC models: :class:`EncoderSpec` (one ResNet tower) and
:class:`ModelSpec` (both towers, heads, temperature and input preprocessing).

A spec travels with the parameters and is saved beside every checkpoint as JSON, so a
checkpoint alone is enough to embed data; :data:`LEGACY_SPEC_FIELDS` says what a
checkpoint written before a field existed meant by leaving it out. The Flax modules the
specs describe are in :mod:`pimc_jax.models`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np

from pimc_jax import defaults
from pimc_jax.compat import LEGACY_SPEC_FIELDS
from pimc_jax.indices import (
    BAND_TABLES,
    resolve_image_bands,
    resolve_indices,
    resolve_radar_indices,
)
from pimc_jax.recurrence import PLOT_SPANS, check_plot_channels
from pimc_jax.valid_tower import PADDINGS, check_valid_tower
from pimc_jax.vocabulary import (
    PLOT_VIEWS,
    S1_VIEWS,
    S2_IMAGE_VIEWS,
    VIEWS,
    check_multilook,
    check_views,
)

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str) -> Any:
    """Maps a config string (``float32``/``bfloat16``/``float16``) to a JAX dtype."""
    if name not in _DTYPES:
        raise ValueError(f"Unknown compute dtype {name!r}; expected one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """Hashable hyper-parameters of one :class:`~pimc_jax.models.ResNetEncoder`."""

    stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    stem_kernel: int = 3
    stem_stride: int = 1
    stem_pool: bool = False
    norm_groups: int = 32
    input_means: bool = False  # what a checkpoint without the field holds
    # "same" (what a checkpoint without the field holds) or "valid": no zero padding inside
    # the input, so the tower also runs densely and exactly (pimc_jax.valid_tower).
    padding: str = "same"

    def __post_init__(self) -> None:
        if self.padding not in PADDINGS:
            raise ValueError(f"encoder padding must be one of {PADDINGS}, got {self.padding!r}")

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
        (``image_encoder``/``image_head``), from :data:`pimc_jax.vocabulary.VIEWS`; the
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
        for tower, encoder in zip(TOWERS, (self.rp_encoder, self.image_encoder), strict=True):
            if encoder.padding == "valid":
                size = self.view_input_shape(self.tower_view(tower))[0]
                check_valid_tower(encoder, size, f"ModelSpec.{tower}_encoder")
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

    def plot_options(self) -> dict[str, Any]:
        """The recurrence-plot settings, as keyword arguments of
        :func:`pimc_jax.recurrence.series_recurrence_plots` (and of
        :func:`~pimc_jax.recurrence.index_recurrence_plots`): ``channels``, ``dimension``,
        ``time_delay``, ``threshold``, ``percentage``, ``normalize``."""
        return dict(
            channels=self.rp_channels,
            dimension=self.rp_dimension,
            time_delay=self.rp_time_delay,
            threshold=self.rp_threshold,
            percentage=self.rp_percentage,
            normalize=self.rp_normalize,
        )

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
        if view in S2_IMAGE_VIEWS:
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
