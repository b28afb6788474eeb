"""Model inputs from raw views, one definition for training, evaluation and inference.

* :func:`series_to_plots`: raw band series → the RP tower's input plots.
* :func:`normalize_crops`: reflectance crops → the image tower's standardised input.
* :func:`radar_plots`: raw Sentinel-1 series (dB) → an ``s1_rp`` tower's input plots.
* :func:`normalize_s1_crops`: Sentinel-1 crops (dB) → an ``s1_image`` tower's input.
* :func:`view_inputs`: any view's model input from a batch (:data:`pimc_jax.data.views.VIEWS`).
* :func:`augment_series`: random, label-preserving changes of a batch of band series
  (date dropout, date jitter, reflectance noise), a pure function of its key.

All are pure ``jax.numpy`` and jittable; the :class:`~pimc_jax.models.ModelSpec` says how
to preprocess, so a model sees identical inputs wherever it runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import chex
import jax
import jax.numpy as jnp

from pimc_jax import recurrence
from pimc_jax.indices import radar_indices
from pimc_jax.models import ModelSpec
from pimc_jax.vocabulary import S2_IMAGE_VIEWS


def series_to_plots(
    spec: ModelSpec,
    bands: jax.Array,
    dates: jax.Array,
    mask: jax.Array,
    band_names: Sequence[str] | None = None,
    *,
    scale: float | None = None,
    nodata: float | None = None,
) -> jax.Array:
    """Raw band series → index recurrence plots, the RP tower's input (jittable).

    Args:
      spec: model spec (indices, plot size, kinds and options, reflectance scale).
      bands: ``(N, T, C)`` float band values (divided by ``spec.reflectance_scale``
        to give reflectance); NaN marks no-data.
      dates: ``(N, T)`` float days (only differences matter).
      mask: ``(N, T)`` bool, True for real acquisitions.
      band_names: names of the ``C`` bands; default ``spec.band_names``.
      scale: ``bands`` are divided by it to give reflectance; default
        ``spec.reflectance_scale`` (a Python number: static under jit).
      nodata: raw band value marking no-data besides NaN (static under jit); band
        values outside :data:`~pimc_jax.indices.PLAUSIBLE_REFLECTANCE` are no-data too.

    Returns:
      ``(N, S', S', K·P)`` float32 plots, ``K = len(spec.indices)``,
      ``P = len(spec.rp_channels)``.
    """
    return recurrence.index_recurrence_plots(
        bands,
        dates,
        mask,
        band_names=tuple(band_names if band_names is not None else spec.band_names),
        size=spec.rp_size,
        indices=spec.indices,
        scale=spec.reflectance_scale if scale is None else scale,
        nodata=nodata,
        span=spec.rp_span,
        **spec.plot_options(),
    )


def _standardize(image: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """``(N, k, k, C)`` crops → ``(x − mean) / std`` per channel, float32; NaN → 0 (the mean)."""
    chex.assert_rank(image, 4)
    normalized = (image.astype(jnp.float32) - jnp.asarray(mean, jnp.float32)) / jnp.asarray(
        std, jnp.float32
    )
    return jnp.where(jnp.isfinite(normalized), normalized, 0.0)


def normalize_crops(spec: ModelSpec, image: jax.Array) -> jax.Array:
    """``(N, k, k, C)`` reflectance crops → per-band standardised float32; NaN → 0 (the mean)."""
    return _standardize(image, spec.image_mean, spec.image_std)


def radar_plots(spec: ModelSpec, s1: jax.Array, dates: jax.Array, mask: jax.Array) -> jax.Array:
    """Raw Sentinel-1 series → recurrence plots of ``spec.s1_indices`` (jittable).

    The radar series (:func:`pimc_jax.indices.radar_indices`, channels named
    ``spec.s1_band_names``) are resampled onto ``spec.rp_size`` regular steps spanning each
    pixel's first to last counted date (:func:`pimc_jax.recurrence.resample_series`; a date
    counts when ``mask`` is True and every series is valid there) and plotted as the S2
    plots are (kinds ``spec.rp_channels``, same embedding and threshold options).

    Args:
      spec: model spec.
      s1: ``(N, T, C1)`` float backscatter in dB, NaN = no-data.
      dates: ``(N, T)`` float days.
      mask: ``(N, T)`` bool, True for real acquisitions.

    Returns:
      ``(N, S', S', K·P)`` float32, ``K = len(spec.s1_indices)``, channel ``p·K + k`` is kind
      ``spec.rp_channels[p]`` of series ``k``; finite for any input.
    """
    chex.assert_rank(s1, 3)
    values, valid = radar_indices(
        s1, spec.s1_indices, band_names=spec.s1_band_names, return_mask=True
    )
    valid = valid & jnp.asarray(mask, bool)
    # (N, T, K) → (N, K, T) → resampled (N, K, S) → (N, S, K)
    series = recurrence.resample_series(
        jnp.swapaxes(jnp.where(valid[..., None], values, jnp.nan), -1, -2),
        jnp.asarray(dates, jnp.float32)[:, None, :],
        valid[:, None, :],
        spec.rp_size,
    )
    plots = recurrence.series_recurrence_plots(jnp.swapaxes(series, -1, -2), **spec.plot_options())
    return plots.astype(jnp.float32)


def normalize_s1_crops(spec: ModelSpec, image: jax.Array) -> jax.Array:
    """``(N, k, k, C)`` S1 crops in dB → standardised float32 (``spec.s1_image_mean`` /
    ``spec.s1_image_std``); NaN → 0 (the mean)."""
    return _standardize(image, spec.s1_image_mean, spec.s1_image_std)


def view_inputs(
    spec: ModelSpec,
    view: str,
    batch: Mapping[str, jax.Array],
    band_names: Sequence[str] | None = None,
) -> jax.Array:
    """The model input of ``view`` from a batch (keys: :data:`pimc_jax.data.views.VIEW_KEYS`).

    Args:
      spec: model spec.
      view: ``"s2_rp"`` (batch ``bands``/``dates``/``mask``), ``"s2_image"`` or
        ``"s2_image_aug"`` (``image``; augmented in the step, not here),
        ``"s1_rp"`` (``s1_bands``/``s1_dates``/``s1_mask``) or ``"s1_image"`` (``s1_image``).
      batch: the arrays (a pre-training batch or evaluation inputs).
      band_names: names of the S2 series bands (default ``spec.band_names``).

    Returns:
      ``(N, H, W, C)`` float32, the shape :meth:`ModelSpec.view_input_shape` gives.
    """
    if view == "s2_rp":
        return series_to_plots(spec, batch["bands"], batch["dates"], batch["mask"], band_names)
    if view in S2_IMAGE_VIEWS:
        return normalize_crops(spec, batch["image"])
    if view == "s1_rp":
        return radar_plots(spec, batch["s1_bands"], batch["s1_dates"], batch["s1_mask"])
    if view == "s1_image":
        return normalize_s1_crops(spec, batch["s1_image"])
    raise ValueError(f"unknown view {view!r}")


def augment_series(
    rng: jax.Array,
    bands: jax.Array,
    dates: jax.Array,
    mask: jax.Array,
    *,
    date_dropout: float = 0.0,
    date_jitter_days: float = 0.0,
    noise_std: float = 0.0,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Random label-preserving changes of band series; a pure function of ``rng``.

    - ``date_dropout``: each real acquisition is dropped (``mask`` False) with this
      probability, as a cloud would; a series keeps at least its two best-drawn dates,
      so none is emptied.
    - ``date_jitter_days``: each date moves by ``U(−j, j)`` days (keep ``j`` under half the
      revisit interval so dates stay ordered).
    - ``noise_std``: each band value is multiplied by ``1 + N(0, noise_std)`` (relative
      radiometric noise; the index ratios are unchanged by a common factor, so the noise
      is drawn per band).

    Args:
      rng: PRNG key.
      bands: ``(N, T, C)`` float band values (NaN = no data).
      dates: ``(N, T)`` float days.
      mask: ``(N, T)`` bool.

    Returns:
      ``(bands, dates, mask)`` with the input shapes; dtypes float32, float32, bool.
    """
    chex.assert_rank(bands, 3)
    chex.assert_rank([dates, mask], 2)
    dropout_key, jitter_key, noise_key = jax.random.split(rng, 3)
    bands = jnp.asarray(bands, jnp.float32)
    dates = jnp.asarray(dates, jnp.float32)
    mask = jnp.asarray(mask, bool)
    if date_dropout > 0:
        draw = jax.random.uniform(dropout_key, mask.shape)
        # The two largest draws of each series are never dropped.
        second_largest = jnp.sort(jnp.where(mask, draw, -1.0), axis=-1)[..., -2:-1]
        mask = mask & ((draw >= date_dropout) | (draw >= second_largest))
    if date_jitter_days > 0:
        shift = jax.random.uniform(
            jitter_key, dates.shape, minval=-date_jitter_days, maxval=date_jitter_days
        )
        dates = dates + shift
    if noise_std > 0:
        bands = bands * (1.0 + noise_std * jax.random.normal(noise_key, bands.shape))
    return bands, dates, mask
