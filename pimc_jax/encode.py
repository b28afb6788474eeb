"""Embedding pixels and image crops with PIMC encoders: ``encode(params, batch)``.

``params`` is a :class:`PIMCParams`: the Flax variables together with the static
:class:`~pimc_jax.models.ModelSpec` that says how to preprocess inputs and build
the model. :func:`init_params` makes fresh ones; :func:`pimc_jax.load_params`
restores them from a pre-training workdir or checkpoint.

The two views become model inputs through :mod:`pimc_jax.preprocessing`, the same
functions the training step and the evaluations call.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from pimc_jax import indices as indices_lib
from pimc_jax.data.views import extract_crops, median_composite
from pimc_jax.models import PIMC, ModelSpec, PIMCParams
from pimc_jax.preprocessing import normalize_crops, series_to_plots

# Batches are padded up to a power of two of at least this many rows (and split
# into chunks of at most ``_MAX_CHUNK``), so any N reuses a handful of compilations.
_MIN_BUCKET = 8
_MAX_CHUNK = 1024
_DATE_BUCKET = 16


@functools.partial(jax.jit, static_argnames=("band_names",))
def _encode_series(
    params: PIMCParams,
    bands: jax.Array,
    dates: jax.Array,
    mask: jax.Array,
    band_names: tuple[str, ...],
) -> tuple[jax.Array, jax.Array]:
    plots = series_to_plots(params.spec, bands, dates, mask, band_names)
    return PIMC(params.spec).apply(params.variables, plots, method=PIMC.encode_rp)


@jax.jit
def _encode_image(params: PIMCParams, image: jax.Array) -> tuple[jax.Array, jax.Array]:
    crops = normalize_crops(params.spec, image)
    return PIMC(params.spec).apply(params.variables, crops, method=PIMC.encode_image)


def _bucket(n: int) -> int:
    return max(_MIN_BUCKET, 1 << (n - 1).bit_length())


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """Pads axis 0 to ``rows`` by repeating the last row (keeps values valid)."""
    if array.shape[0] == rows:
        return array
    return np.concatenate([array, np.repeat(array[-1:], rows - array.shape[0], axis=0)], axis=0)


def _chunked(fn, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Runs ``fn`` over row chunks of ``arrays`` with bucketed padding; concatenates."""
    total = arrays[0].shape[0]
    features, embeddings = [], []
    for start in range(0, total, _MAX_CHUNK):
        chunk = [a[start : start + _MAX_CHUNK] for a in arrays]
        rows = chunk[0].shape[0]
        padded = [_pad_rows(a, _bucket(rows)) for a in chunk]
        f, z = fn(*padded)
        features.append(np.asarray(f)[:rows])
        embeddings.append(np.asarray(z)[:rows])
    return np.concatenate(features), np.concatenate(embeddings)


def _series_inputs(
    spec: ModelSpec, batch: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    bands = np.asarray(batch["bands"], np.float32)
    if bands.ndim != 3:
        raise ValueError(f"batch['bands'] must be (N, T, C), got shape {bands.shape}")
    num, num_dates, num_bands = bands.shape
    band_names = tuple(batch.get("band_names", spec.band_names))
    if len(band_names) != num_bands:
        raise ValueError(
            f"batch['bands'] has {num_bands} bands but band_names has {len(band_names)}: "
            f"{band_names}"
        )
    if "dates" not in batch:
        raise ValueError("batch has 'bands' but no 'dates' ((T,) or (N, T) days)")
    dates = np.asarray(batch["dates"], np.float32)
    if dates.ndim == 1:
        dates = np.broadcast_to(dates, (num, num_dates))
    if dates.shape != (num, num_dates):
        raise ValueError(
            f"batch['dates'] must be (T,) or (N, T) = ({num}, {num_dates}), got "
            f"{np.shape(batch['dates'])}"
        )
    mask = np.asarray(batch.get("mask", np.ones((num, num_dates), bool)), bool)
    if mask.shape != (num, num_dates):
        raise ValueError(f"batch['mask'] must be (N, T) = ({num}, {num_dates}), got {mask.shape}")
    # Pad the time axis to a bucket too; padded steps are masked out.
    padded_dates = -(-num_dates // _DATE_BUCKET) * _DATE_BUCKET
    if padded_dates != num_dates:
        extra = padded_dates - num_dates
        bands = np.concatenate([bands, np.full((num, extra, num_bands), np.nan, np.float32)], 1)
        dates = np.concatenate([dates, np.repeat(dates[:, -1:], extra, axis=1)], 1)
        mask = np.concatenate([mask, np.zeros((num, extra), bool)], 1)
    return bands, np.ascontiguousarray(dates), mask, band_names


def _image_inputs(spec: ModelSpec, batch: Mapping[str, Any]) -> np.ndarray:
    image = np.asarray(batch["image"], np.float32)
    if image.ndim != 4:
        raise ValueError(f"batch['image'] must be (N, k, k, C), got shape {image.shape}")
    if "image_band_names" in batch:
        names = [indices_lib.canonical_band_name(n) for n in batch["image_band_names"]]
        if len(names) != image.shape[-1]:
            raise ValueError(
                f"batch['image'] has {image.shape[-1]} bands but image_band_names has {len(names)}"
            )
        wanted = [indices_lib.canonical_band_name(n) for n in spec.image_bands]
        missing = [w for w in wanted if w not in names]
        if missing:
            raise ValueError(
                f"image bands {missing} needed by the model are not in image_band_names {names}"
            )
        image = image[..., [names.index(w) for w in wanted]]
    if image.shape[-1] != len(spec.image_bands):
        raise ValueError(
            f"batch['image'] has {image.shape[-1]} bands; the model expects "
            f"{len(spec.image_bands)} ({spec.image_bands}); pass image_band_names to select them"
        )
    return image


def encode(params: PIMCParams, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Embeds pixels and/or image crops.

    Args:
      params: :class:`PIMCParams` from :func:`init_params` or :func:`pimc_jax.load_params`.
      batch: a dict with either or both views:

        * ``bands``: ``(N, T, C)`` raw band time series (reflectance × ``spec.reflectance_scale``,
          NaN = no-data), with ``dates`` ``(T,)`` or ``(N, T)`` in days, optional ``mask``
          ``(N, T)`` bool (True = real acquisition) and optional ``band_names`` (default
          the model's ``spec.band_names``).
        * ``image``: ``(N, k, k, C)`` reflectance crops centred on the pixels, bands in
          ``spec.image_bands`` order, or any order named by ``image_band_names``.

    Returns:
      For the series view ``rp`` ``(N, D)`` float32 unit-norm embeddings and ``rp_features``
      ``(N, F)`` backbone features; for the image view ``image`` and ``image_features``
      likewise. Any ``N`` works: inputs are padded to a few bucket sizes (and long
      batches chunked) so that new sizes rarely recompile.
    """
    if not isinstance(params, PIMCParams):
        raise TypeError(
            f"params must be PIMCParams (from init_params or load_params), got {type(params)}"
        )
    if "bands" not in batch and "image" not in batch:
        raise ValueError(f"batch needs 'bands' and/or 'image'; got keys {sorted(batch)}")
    spec = params.spec
    out: dict[str, np.ndarray] = {}
    if "bands" in batch:
        bands, dates, mask, band_names = _series_inputs(spec, batch)
        fn = lambda b, d, m: _encode_series(params, b, d, m, band_names)
        out["rp_features"], out["rp"] = _chunked(fn, [bands, dates, mask])
    if "image" in batch:
        image = _image_inputs(spec, batch)
        fn = lambda im: _encode_image(params, im)
        out["image_features"], out["image"] = _chunked(fn, [image])
    return out


def encode_patch(
    params: PIMCParams,
    bands: np.ndarray,
    dates: np.ndarray,
    band_names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Dense embeddings of every pixel of a patch, both views.

    Args:
      params: model parameters.
      bands: ``(T, H, W, C)`` raw band values of one SITS patch (NaN = no-data).
      dates: ``(T,)`` days.
      band_names: names of the ``C`` bands (default ``spec.band_names``).

    Returns:
      ``rp`` and ``image`` embeddings, each ``(H, W, D)`` float32 (and the matching
      ``*_features`` ``(H, W, F)``). The image view of a pixel is the reflect-padded
      ``crop_size`` crop around it from the per-pixel median over dates, so the
      embedding is independent of any single (possibly cloudy) acquisition.
    """
    spec = params.spec
    bands = np.asarray(bands, np.float32)
    if bands.ndim != 4:
        raise ValueError(f"bands must be (T, H, W, C), got shape {bands.shape}")
    num_dates, height, width, num_bands = bands.shape
    names = tuple(band_names if band_names is not None else spec.band_names)
    if len(names) != num_bands:
        raise ValueError(f"bands has {num_bands} channels but band_names has {len(names)}")
    series = bands.transpose(1, 2, 0, 3).reshape(height * width, num_dates, num_bands)
    canonical = [indices_lib.canonical_band_name(n) for n in names]
    image_channels = []
    for wanted in spec.image_bands:
        name = indices_lib.canonical_band_name(wanted)
        if name not in canonical:
            raise ValueError(f"image band {wanted!r} is not among the patch bands {names}")
        image_channels.append(canonical.index(name))
    composite = median_composite(bands[..., image_channels] / spec.reflectance_scale)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    centers = np.stack([rows.ravel(), cols.ravel()], axis=1)
    crops = extract_crops(composite, centers, spec.crop_size)
    out = encode(params, {"bands": series, "dates": dates, "band_names": names, "image": crops})
    return {key: value.reshape(height, width, -1) for key, value in out.items()}
