"""Embedding pixels and image crops with PIMC encoders: ``encode(params, batch)``.

``params`` is a :class:`PIMCParams`: the Flax variables together with the static
:class:`~pimc_jax.models.ModelSpec` that says how to preprocess inputs and build
the model. :func:`init_params` makes fresh ones; :func:`pimc_jax.load_params`
restores them from a pre-training workdir or checkpoint.

Each tower reads the view its checkpoint's ``spec.views`` names (Sentinel-2 series or
crops, Sentinel-1 series or crops; :data:`pimc_jax.data.views.VIEWS`); the views become
model inputs through :mod:`pimc_jax.preprocessing`, the same functions the training step
and the evaluations call. Outputs are named by tower whatever its view: ``rp`` for tower
1, ``image`` for tower 2.

Raw rasters are accepted as they come: ``scale`` converts digital numbers to reflectance,
``nodata`` names the fill value, dates may be ISO strings, band names a table name
(``"pastis"``), and every pixel gets a ``valid`` flag saying whether it had any usable
acquisition.

Whole patches: :func:`encode_patch` (one patch, or a loaded
:class:`~pimc_jax.data.patches.Patch`), :func:`encode_patches` (many, one at a time, with
a progress bar), :func:`principal_components` (the first k components of embeddings, e.g.
to view them as RGB); :mod:`pimc_jax.data.geotiff` writes the results on the patch's grid.

Dense encoding scales to large rasters: :func:`encode_patch` works through the raster in
blocks of rows (``chunk_pixels`` pixels at a time), so its memory beyond the input and
the outputs is bounded, and embeds each distinct series or crop once (pixels with
identical inputs, e.g. no-data areas, share one computation). Its image view has two
modes (:data:`ENCODE_MODES`):

* ``"exact"`` (the default): every pixel's reflect-padded ``crop_size`` crop goes
  through the image tower on its own, exactly as in training.
* ``"fast"``: the image tower runs once, fully convolutionally, over the whole
  reflect-padded median composite, and each pixel's features are pooled over its crop
  window (:func:`dense_image_features`). It differs from ``"exact"`` in two ways only:
  (1) convolutions near a crop's edge see the real neighbouring pixels where the exact
  crop sees zero padding, and (2) GroupNorm statistics at a position are those of the
  crop-sized window centred on it, where in the exact crop every position of the crop
  shares the crop's statistics. Strided layers keep every pixel's sampling grid (they run
  at full resolution with dilated kernels), so nothing else changes. It is hundreds of
  times cheaper for the image tower; ``bench/dense_encode.py`` measures its agreement
  with ``"exact"`` (cosine similarity, linear-probe accuracy).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pimc_jax import defaults
from pimc_jax import encode_checks as checks
from pimc_jax import indices as indices_lib
from pimc_jax import progress as progress_lib
from pimc_jax.data.patches import Patch, series_dates
from pimc_jax.data.radar import pixel_s1_series, s1_channel_columns
from pimc_jax.data.user import dates_to_days
from pimc_jax.data.views import (
    MEDIAN_COMPOSITE,
    PLOT_VIEWS,
    VIEW_KEYS,
    _reflect_index,
    extract_crops,
    median_composite,
    pad_rows,
    s1_image_dates,
    s2_image_days,
)
from pimc_jax.models import PIMC, EncoderSpec, ModelSpec, PIMCParams, _groups
from pimc_jax.preprocessing import (
    normalize_crops,
    normalize_s1_crops,
    radar_plots,
    series_to_plots,
)

# Batches are padded up to a power of two of at least this many rows (and split
# into chunks of at most ``_MAX_CHUNK``), so any N reuses a handful of compilations.
_MIN_BUCKET = 8
_MAX_CHUNK = 1024
_DATE_BUCKET = 16
# encode_patch's default block: pixels whose inputs are held at once.
PATCH_CHUNK_PIXELS = 16384
ENCODE_MODES: tuple[str, ...] = ("exact", "fast")


# Tower 1 and tower 2 by index, whatever views they read (``ModelSpec.views``), and the
# names of their outputs: (embeddings, features).
_TOWER_METHODS = (PIMC.encode_rp, PIMC.encode_image)
_TOWER_OUTPUTS: tuple[tuple[str, str], ...] = (("rp", "rp_features"), ("image", "image_features"))
# The batch key holding each view's main input (the first of VIEW_KEYS).
_VIEW_INPUT: dict[str, str] = {view: keys[0] for view, keys in VIEW_KEYS.items()}
# encode_patch's default largest |S1 day − S2 image day| of an s1_image crop (training's).
S1_MAX_GAP_DAYS: float | None = defaults.data_config().s1_max_gap_days


def _apply_tower(params: PIMCParams, tower: int, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Tower ``tower`` (0 or 1) on its model inputs → float32 features ``(N, F)`` and
    embeddings ``(N, D)``."""
    return PIMC(params.spec).apply(params.variables, inputs, method=_TOWER_METHODS[tower])


@functools.partial(jax.jit, static_argnames=("band_names", "scale", "tower"))
def _encode_series(
    params: PIMCParams,
    bands: jax.Array,
    dates: jax.Array,
    mask: jax.Array,
    band_names: tuple[str, ...],
    scale: float,
    tower: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(N, T, C)`` S2 bands → features ``(N, F)``, embeddings ``(N, D)``, valid ``(N,)`` bool."""
    spec = params.spec
    plots = series_to_plots(spec, bands, dates, mask, band_names, scale=scale)
    _, index_ok = indices_lib.vegetation_indices(
        bands, band_names, spec.indices, scale=scale, return_mask=True
    )
    valid = jnp.any(mask & index_ok & jnp.isfinite(dates), axis=-1)
    features, embeddings = _apply_tower(params, tower, plots)
    return features, embeddings, valid


@functools.partial(jax.jit, static_argnames=("tower",))
def _encode_radar(
    params: PIMCParams, s1: jax.Array, dates: jax.Array, mask: jax.Array, tower: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(N, T1, C1)`` dB series (channels ``spec.s1_band_names``) → features ``(N, F)``,
    embeddings ``(N, D)``, valid ``(N,)`` bool."""
    spec = params.spec
    plots = radar_plots(spec, s1, dates, mask)
    _, series_ok = indices_lib.radar_indices(
        s1, spec.s1_indices, band_names=spec.s1_band_names, return_mask=True
    )
    valid = jnp.any(mask & series_ok & jnp.isfinite(dates), axis=-1)
    features, embeddings = _apply_tower(params, tower, plots)
    return features, embeddings, valid


@functools.partial(jax.jit, static_argnames=("view", "tower"))
def _encode_image(
    params: PIMCParams, image: jax.Array, view: str, tower: int
) -> tuple[jax.Array, jax.Array]:
    """``(N, k, k, C)`` crops of ``view`` → features ``(N, F)``, embeddings ``(N, D)``."""
    normalize = normalize_crops if view == "s2_image" else normalize_s1_crops
    return _apply_tower(params, tower, normalize(params.spec, image))


def _bucket(n: int) -> int:
    return max(_MIN_BUCKET, 1 << (n - 1).bit_length())


def _chunked(
    fn, arrays: Sequence[np.ndarray], progress: bool | None = False, desc: str = ""
) -> tuple[np.ndarray, ...]:
    """Runs ``fn`` over row chunks of ``arrays`` with bucketed padding; concatenates.

    ``fn`` returns a tuple of arrays with rows on axis 0; so does this. With no rows at
    all, ``fn`` runs once on a zero-filled bucket so the outputs are ``(0, ...)`` arrays of
    the right trailing shape and dtype. ``progress``: a bar over the chunks when there
    is more than one (:mod:`pimc_jax.progress`; None = on a terminal only).
    """
    total = arrays[0].shape[0]
    if total == 0:
        dummy = [np.zeros((_MIN_BUCKET, *a.shape[1:]), a.dtype) for a in arrays]
        return tuple(np.asarray(out)[:0] for out in fn(*dummy))
    pieces: list[list[np.ndarray]] = []
    starts = range(0, total, _MAX_CHUNK)
    if len(starts) > 1:
        starts = progress_lib.progress(starts, desc=desc, unit="chunk", enabled=progress)
    for start in starts:
        chunk = [a[start : start + _MAX_CHUNK] for a in arrays]
        rows = chunk[0].shape[0]
        padded = [pad_rows(a, _bucket(rows)) for a in chunk]
        pieces.append([np.asarray(out)[:rows] for out in fn(*padded)])
    return tuple(np.concatenate(parts) for parts in zip(*pieces, strict=True))


def _unique_rows(arrays: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The distinct rows of ``arrays`` taken together (byte for byte), and how to expand them.

    Returns:
      ``(distinct, inverse)``: ``distinct`` the arrays restricted to the first occurrence
      of each distinct row (in order of first occurrence), ``inverse`` ``(N,)`` int64 with
      ``distinct[k][inverse] == arrays[k]``; or ``(arrays, None)`` when no row repeats.
    """
    num = arrays[0].shape[0]
    if num < 2:
        return list(arrays), None
    raw = np.concatenate(
        [np.ascontiguousarray(a).reshape(num, -1).view(np.uint8) for a in arrays], axis=1
    )
    keys = np.ascontiguousarray(raw).view(np.dtype((np.void, raw.shape[1])))[:, 0]
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if first.size == num:
        return list(arrays), None
    # np.unique orders by key; re-number in order of first occurrence.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return [a[first[order]] for a in arrays], rank[inverse.reshape(-1)]


def _encode_distinct(
    fn, arrays: Sequence[np.ndarray], progress: bool | None, desc: str
) -> tuple[np.ndarray, ...]:
    """:func:`_chunked` on the distinct rows of ``arrays`` only, expanded back to all rows."""
    distinct, inverse = _unique_rows(arrays)
    outputs = _chunked(fn, distinct, progress, desc)
    return outputs if inverse is None else tuple(out[inverse] for out in outputs)


def _check_scale(scale: float | None) -> None:
    if scale is None:
        return
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)):
        raise ValueError(f"scale must be a finite positive number or None, got {scale!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite positive number or None, got {scale!r}")


def _to_reflectance(raw: Any, scale: float | None, nodata: float | None, name: str) -> np.ndarray:
    """Raw band values → float32, ``raw × scale`` if ``scale`` is given; ``nodata`` → NaN."""
    indices_lib.check_numeric(raw, name)
    raw = np.asarray(raw)
    missing = (raw == nodata) if nodata is not None else None
    with np.errstate(over="ignore", invalid="ignore"):
        if scale is None:
            values = raw.astype(np.float32)
        else:
            # Overflow gives inf, which counts as no-data downstream.
            values = (raw.astype(np.float64) * scale).astype(np.float32)
    if missing is not None and np.any(missing):
        values = np.where(missing, np.float32(np.nan), values)
    return values


def _parse_dates(value: Any, name: str = "batch['dates']") -> np.ndarray:
    """Numeric days, ISO strings, datetime64 or dates → float32 days (errors name ``name``)."""
    array = np.asarray(value)
    if array.dtype.kind not in "USOMiuf":
        raise ValueError(
            f"{name} must be numeric days or ISO date strings, got dtype {array.dtype}"
        )
    return dates_to_days(array, name).astype(np.float32)  # whole days, as the loaders


def _series_dates_mask(
    batch: Mapping[str, Any], values_key: str, num: int, num_dates: int
) -> tuple[np.ndarray, np.ndarray]:
    """The checked ``(N, T)`` float32 dates and bool mask of series ``batch[values_key]``
    (keys ``dates``/``mask``, or ``s1_dates``/``s1_mask`` for ``s1_bands``)."""
    prefix = "s1_" if values_key == "s1_bands" else ""
    dates_key, mask_key = f"{prefix}dates", f"{prefix}mask"
    if dates_key not in batch:
        raise ValueError(
            f"batch has {values_key!r} but no {dates_key!r} ((T,) or (N, T) days or ISO strings)"
        )
    name = f"batch[{dates_key!r}]"
    dates = series_dates(_parse_dates(batch[dates_key], name), num, num_dates, name)
    mask = np.asarray(batch.get(mask_key, np.ones((num, num_dates), bool)), bool)
    if mask.shape != (num, num_dates):
        raise ValueError(
            f"batch[{mask_key!r}] must be (N, T) = ({num}, {num_dates}), got {mask.shape}"
        )
    checks.check_increasing_dates(dates, mask, name)
    return dates, mask


def _pad_dates(
    values: np.ndarray, dates: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pads the time axis of ``(N, T, C)`` series to a multiple of ``_DATE_BUCKET`` (so that
    new lengths rarely recompile): values NaN, dates the last date, mask False."""
    num, num_dates, channels = values.shape
    padded_dates = max(1, -(-num_dates // _DATE_BUCKET)) * _DATE_BUCKET
    if padded_dates != num_dates:
        extra = padded_dates - num_dates
        last = dates[:, -1:] if num_dates else np.zeros((num, 1), np.float32)
        values = np.concatenate([values, np.full((num, extra, channels), np.nan, np.float32)], 1)
        dates = np.concatenate([dates, np.repeat(last, extra, axis=1)], 1)
        mask = np.concatenate([mask, np.zeros((num, extra), bool)], 1)
    return values, np.ascontiguousarray(dates), mask


def _series_inputs(
    spec: ModelSpec,
    batch: Mapping[str, Any],
    scale: float | None = None,
    nodata: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Checked, padded ``(bands, dates, mask, band_names)``: float32 ``(N, T', C)``,
    float32 ``(N, T')``, bool ``(N, T')`` with ``T'`` the date bucket, names ``(C,)``."""
    bands = _to_reflectance(batch["bands"], scale, nodata, "batch['bands']")
    if bands.ndim != 3:
        raise ValueError(f"batch['bands'] must be (N, T, C), got shape {bands.shape}")
    num, num_dates, num_bands = bands.shape
    band_names = indices_lib.resolve_band_names(batch.get("band_names", spec.band_names))
    if len(band_names) != num_bands:
        raise ValueError(
            f"batch['bands'] has {num_bands} bands but band_names has {len(band_names)}: "
            f"{band_names}"
        )
    dates, mask = _series_dates_mask(batch, "bands", num, num_dates)
    bands, dates, mask = _pad_dates(bands, dates, mask)
    return bands, dates, mask, band_names


def _radar_inputs(
    spec: ModelSpec, batch: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked, padded ``(s1_bands, s1_dates, s1_mask)``: float32 ``(N, T', C1)`` dB with the
    channels in ``spec.s1_band_names`` order (NaN for one not given, which the model's
    radar series then do not read), float32 ``(N, T')`` days, bool ``(N, T')``; ``T'`` the
    date bucket."""
    indices_lib.check_numeric(batch["s1_bands"], "batch['s1_bands']")
    with np.errstate(over="ignore", invalid="ignore"):
        s1 = np.asarray(batch["s1_bands"]).astype(np.float32)
    if s1.ndim != 3:
        raise ValueError(f"batch['s1_bands'] must be (N, T1, C1) dB, got shape {s1.shape}")
    num, num_dates, channels = s1.shape
    names = indices_lib.check_radar_band_names(batch.get("s1_band_names", spec.s1_band_names))
    if len(names) != channels:
        raise ValueError(
            f"batch['s1_bands'] has {channels} channels but s1_band_names has {len(names)}: {names}"
        )
    # One-line error when a channel the model's radar series read is missing.
    indices_lib.resolve_radar_indices(spec.s1_indices, names)
    wanted = indices_lib.check_radar_band_names(spec.s1_band_names)
    if names != wanted:
        columns = [s1[..., names.index(n)] if n in names else None for n in wanted]
        blank = np.full((num, num_dates), np.nan, np.float32)
        s1 = np.stack([blank if c is None else c for c in columns], axis=-1)
    dates, mask = _series_dates_mask(batch, "s1_bands", num, num_dates)
    return _pad_dates(np.ascontiguousarray(s1), dates, mask)


def _s1_image_inputs(spec: ModelSpec, batch: Mapping[str, Any]) -> np.ndarray:
    """``batch['s1_image']`` checked: ``(N, k, k, C2)`` float32 dB, ``C2`` the model's
    ``spec.s1_image_bands``."""
    indices_lib.check_numeric(batch["s1_image"], "batch['s1_image']")
    with np.errstate(over="ignore", invalid="ignore"):
        image = np.asarray(batch["s1_image"]).astype(np.float32)
    if image.ndim != 4:
        raise ValueError(f"batch['s1_image'] must be (N, k, k, C) dB, got shape {image.shape}")
    checks.check_crop_size(image, spec.crop_size, "batch['s1_image']")
    if image.shape[-1] != len(spec.s1_image_bands):
        raise ValueError(
            f"batch['s1_image'] has {image.shape[-1]} channels; the model expects "
            f"{len(spec.s1_image_bands)} ({spec.s1_image_bands}, in that order)"
        )
    return image


def _implausible_to_nan(reflectance: np.ndarray) -> np.ndarray:
    """Reflectance outside :data:`~pimc_jax.indices.PLAUSIBLE_REFLECTANCE` → NaN (no-data)."""
    low, high = indices_lib.PLAUSIBLE_REFLECTANCE
    with np.errstate(invalid="ignore"):
        keep = (reflectance >= low) & (reflectance <= high)
    return np.where(keep, reflectance, np.float32(np.nan)).astype(np.float32)


def _image_inputs(spec: ModelSpec, batch: Mapping[str, Any]) -> np.ndarray:
    indices_lib.check_numeric(batch["image"], "batch['image']")
    image = _implausible_to_nan(np.asarray(batch["image"], np.float32))
    if image.ndim != 4:
        raise ValueError(f"batch['image'] must be (N, k, k, C), got shape {image.shape}")
    checks.check_crop_size(image, spec.crop_size, "batch['image']")
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


def encode(
    params: PIMCParams,
    batch: Mapping[str, Any],
    *,
    scale: float | None = None,
    nodata: float | None = None,
    progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Embeds pixels and/or image crops with the model's towers.

    Each tower reads one view (``params.spec.views``, :data:`pimc_jax.data.views.VIEWS`);
    ``batch`` holds the inputs of one or both of them.

    Args:
      params: :class:`PIMCParams` from :func:`init_params` or :func:`pimc_jax.load_params`.
      batch: a dict with the inputs of one or both of the model's views:

        * ``s2_rp``: ``bands``: ``(N, T, C)`` band time series, any numeric dtype (NaN =
          no-data), with ``dates`` ``(T,)`` or ``(N, T)`` (days as numbers, ISO strings like
          ``"2019-04-01"``, or ``datetime64``), optional ``mask`` ``(N, T)`` bool (True =
          real acquisition) and optional ``band_names`` (``C`` names or a table name of
          :data:`~pimc_jax.indices.BAND_TABLES` such as ``"pastis"``; default the model's
          ``spec.band_names``).
        * ``s2_image``: ``image``: ``(N, k, k, C)`` reflectance crops centred on the pixels,
          bands in ``spec.image_bands`` order, or any order named by ``image_band_names``.
        * ``s1_rp``: ``s1_bands``: ``(N, T1, C1)`` Sentinel-1 backscatter in dB, any numeric
          dtype (NaN = no-data), with ``s1_dates`` ``(T1,)`` or ``(N, T1)`` (as ``dates``),
          optional ``s1_mask`` ``(N, T1)`` bool and optional ``s1_band_names`` (``C1``
          names of :data:`~pimc_jax.indices.S1_BAND_NAMES`, any order; default
          ``spec.s1_band_names``). The series are used as given: the model was trained on
          series multilooked over ``spec.s1_multilook`` × ``spec.s1_multilook`` pixels,
          which :func:`pimc_jax.data.radar.pixel_s1_series` builds from a patch's
          ``s1_bands`` (:func:`encode_patch` does so).
        * ``s1_image``: ``s1_image``: ``(N, k, k, C2)`` Sentinel-1 crops in dB centred on
          the pixels (NaN = no-data), channels in ``spec.s1_image_bands`` order.
      scale: for ``bands``: raw value × ``scale`` = reflectance (e.g. ``1e-4`` for
        Sentinel-2 L2A digital numbers). None: ``bands`` are reflectance ×
        ``spec.reflectance_scale``, the model's own convention.
      nodata: for ``bands``: raw value (compared before scaling) marking no-data, like
        NaN, e.g. ``-9999`` or ``3.4028235e38``. Reflectance outside
        :data:`~pimc_jax.indices.PLAUSIBLE_REFLECTANCE` is no-data as well (and backscatter
        outside :data:`~pimc_jax.indices.PLAUSIBLE_BACKSCATTER_DB` for ``s1_bands``).
      progress: a progress bar over the chunks of more than ``1024`` rows: True, False,
        or None for one on a terminal only (:mod:`pimc_jax.progress`).

    Returns:
      Named by tower, whatever its view: tower 1 (``spec.views[0]``) gives ``rp`` ``(N, D)``
      float32 unit-norm embeddings and ``rp_features`` ``(N, F)`` backbone features, tower
      2 ``image`` and ``image_features`` likewise. With a series view (``s2_rp`` or
      ``s1_rp``) also ``valid`` ``(N,)`` bool: True where the pixel has at least one usable
      date (masked in, finite date, all the model's indices or radar series valid; with
      two series views, in both). A pixel with ``valid`` False gets the embedding of
      all-zero plots, one and the same finite vector for every such pixel (possibly the
      zero vector, not unit-norm): drop or mask those rows. Any ``N`` works, ``N = 0``
      included (``(0, D)`` arrays): inputs are padded to a few bucket sizes (and long
      batches chunked) so that new sizes rarely recompile. Rows that repeat exactly (the
      same series, dates and mask, or the same crop) are embedded once. An image view's
      tower also gives ``<name>_valid`` (``image_valid`` for tower 2) ``(N,)`` bool: False
      for a crop that is all gaps (NaN or implausible values), whose embedding is one and
      the same vector for every such crop.

    Raises:
      ValueError: one line naming the problem: a key feeding a view the model does not
        have, wrong ranks or shapes (``dates`` of the wrong length, views with different
        row counts, crops of another size than ``spec.crop_size``), dates that are not
        whole days or not strictly increasing at the real acquisitions, wrong channel counts,
        non-numeric values, unparseable dates, unknown band names, a band needed by the
        model's indices or radar series missing, or a bad ``scale``.
      TypeError: ``params`` is not :class:`PIMCParams`.
    """
    if not isinstance(params, PIMCParams):
        raise TypeError(
            f"params must be PIMCParams (from init_params or load_params), got {type(params)}"
        )
    inputs = tuple(_VIEW_INPUT.values())
    if not any(key in batch for key in inputs):
        raise ValueError(f"batch needs one of {inputs}; got keys {sorted(batch)}")
    _check_scale(scale)
    spec = params.spec
    for view, key in _VIEW_INPUT.items():
        if key in batch and view not in spec.views:
            raise ValueError(
                f"batch[{key!r}] feeds the {view} view, but this model's towers read "
                f"model.views={spec.views}"
            )
    checks.check_rows(batch, _VIEW_INPUT.values())
    out: dict[str, np.ndarray] = {}
    valid: list[np.ndarray] = []
    for tower, view in enumerate(spec.views):
        if _VIEW_INPUT[view] not in batch:
            continue
        name, features_name = _TOWER_OUTPUTS[tower]
        if view == "s2_rp":
            bands, dates, mask, band_names = _series_inputs(spec, batch, scale, nodata)
            divisor = spec.reflectance_scale if scale is None else 1.0
            fn = functools.partial(
                _encode_series, params, band_names=band_names, scale=divisor, tower=tower
            )
            arrays, desc = [bands, dates, mask], "Encoding series"
        elif view == "s1_rp":
            fn = functools.partial(_encode_radar, params, tower=tower)
            arrays, desc = list(_radar_inputs(spec, batch)), "Encoding S1 series"
        else:
            inputs_of = _image_inputs if view == "s2_image" else _s1_image_inputs
            fn = functools.partial(_encode_image, params, view=view, tower=tower)
            arrays, desc = [inputs_of(spec, batch)], "Encoding crops"
            out[f"{name}_valid"] = checks.crops_valid(arrays[0])
        results = _encode_distinct(fn, arrays, progress, desc)
        out[features_name], out[name] = results[:2]
        if view in PLOT_VIEWS:
            valid.append(results[2])
    if valid:
        out["valid"] = np.logical_and.reduce(valid)
    return out


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

    Approximates ``encode_image`` on the ``crop_size`` crop centred on each pixel (module
    docstring, ``"fast"``): strided layers run at full resolution with dilated kernels so
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


def _fast_image(
    params: PIMCParams, composite: np.ndarray, rows_per_chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """``"fast"`` image view of a whole ``(H, W, C)`` composite, in tiles of rows.

    Each tile is cut from the composite reflect-padded by :func:`dense_margin` (so that a
    tile's pixels see what they would in one pass over the whole raster); every tile has
    the same shape (the last one reaches further into the reflection), so one compilation
    serves them all. Returns ``(H·W, F)`` features and ``(H·W, D)`` embeddings.
    """
    height, width, _ = composite.shape
    margin = dense_margin(params.spec)
    tile = min(height, max(rows_per_chunk, 2 * margin))
    cols = _reflect_index(np.arange(-margin, width + margin), width)
    pieces = []
    for start in range(0, height, tile):
        rows = _reflect_index(np.arange(start - margin, start + tile + margin), height)
        features, embeddings = _encode_image_dense(
            params, composite[rows[:, None], cols[None, :]], margin
        )
        keep = min(tile, height - start) * width
        pieces.append((np.asarray(features)[:keep], np.asarray(embeddings)[:keep]))
    return tuple(np.concatenate(parts) for parts in zip(*pieces, strict=True))


def _s1_image_frame(patch: Patch, spec: ModelSpec, max_gap_days: float | None) -> np.ndarray:
    """The ``(H, W, C2)`` float32 dB Sentinel-1 image of ``patch`` an ``s1_image`` view crops.

    Its date is chosen as pre-training chooses it for the median-composite S2 image
    (:func:`~pimc_jax.data.views.s2_image_days`, :func:`~pimc_jax.data.views.s1_image_dates`):
    the S1 date nearest to the patch's median S2 date, within ``max_gap_days``; channels
    ``spec.s1_image_bands``.
    """
    s2_day = s2_image_days(patch, np.asarray([MEDIAN_COMPOSITE]))
    index = int(s1_image_dates(patch, s2_day, max_gap_days)[0])
    if index < 0:
        raise ValueError(
            f"patch {patch.patch_id!r}: no Sentinel-1 date within s1_max_gap_days="
            f"{max_gap_days} of its Sentinel-2 image day {int(s2_day[0])} (the median of its "
            f"dates), which the s1_image view needs"
        )
    columns = s1_channel_columns(patch.s1_band_names, spec.s1_image_bands, "spec.s1_image_bands")
    return np.asarray(patch.s1_bands[index][..., columns], np.float32)


def _s1_series(
    patch: Patch, spec: ModelSpec, rows: np.ndarray, cols: np.ndarray, pixels: int
) -> np.ndarray:
    """:func:`~pimc_jax.data.radar.pixel_s1_series` of pixels ``(rows, cols)`` with the model's
    multilook, computed ``pixels // s1_multilook²`` pixels at a time (the neighbourhoods of
    at most about ``pixels`` pixels held at once). Returns ``(N, T1, C1)`` float32 dB."""
    step = max(1, pixels // spec.s1_multilook**2)
    pieces = [
        pixel_s1_series(
            patch.s1_bands,
            rows[start : start + step],
            cols[start : start + step],
            patch.s1_band_names,
            spec.s1_multilook,
        )
        for start in range(0, max(rows.size, 1), step)  # one empty piece for no pixel
    ]
    return np.concatenate(pieces)


def encode_patch(
    params: PIMCParams,
    bands: np.ndarray | Patch,
    dates: Any = None,
    band_names: str | Sequence[str] | None = None,
    *,
    scale: float | None = None,
    nodata: float | None = None,
    progress: bool | None = None,
    mode: str = "exact",
    chunk_pixels: int = PATCH_CHUNK_PIXELS,
    s1_max_gap_days: float | None = S1_MAX_GAP_DAYS,
) -> dict[str, np.ndarray]:
    """Dense embeddings of every pixel of a patch or raster, with both towers.

    Args:
      params: model parameters.
      bands: ``(T, H, W, C)`` raw band values of one SITS patch (NaN = no-data), or a
        :class:`~pimc_jax.data.patches.Patch` (e.g. from
        :func:`~pimc_jax.data.user.load_patch_folder`), whose reflectance, dates and band
        names are used; then give none of ``dates``, ``band_names``, ``scale``, ``nodata``.
        A NumPy memory map works too: it is read block by block. A model with a
        Sentinel-1 view (``s1_rp``, ``s1_image``) needs a Patch holding Sentinel-1
        (``s1_bands``, ``s1_dates``, ``s1_band_names``).
      dates: ``(T,)`` days, ISO date strings or ``datetime64``.
      band_names: names of the ``C`` bands or a table name such as ``"pastis"`` (default
        ``spec.band_names``).
      scale, nodata: as for :func:`encode` (raw × ``scale`` = reflectance; ``nodata`` is
        the fill value); they apply to the image composite too.
      progress: a progress bar over the blocks of rows (see :func:`encode`).
      mode: the ``s2_image`` view's computation, ``"exact"`` (default: each pixel's crop
        through the tower, as in training) or ``"fast"`` (one fully convolutional pass, an
        approximation; module docstring; for a model whose tower 2 reads ``s2_image`` and
        no tower ``s1_image``). The series views are exact in both.
      chunk_pixels: pixels whose inputs (series, crops) are held at once: the raster is
        processed in blocks of ``max(1, chunk_pixels // W)`` rows, so memory beyond the
        input and the outputs stays bounded. The result does not depend on it.
      s1_max_gap_days: for an ``s1_image`` view, the largest ``|S1 day − S2 image day|``
        (pre-training's ``data.s1_max_gap_days``); None accepts any.

    Returns:
      Named by tower as :func:`encode` names them: ``rp`` (tower 1) and ``image`` (tower
      2) embeddings, each ``(H, W, D)`` float32, the matching ``*_features``
      ``(H, W, F)``, and with a series view ``valid`` ``(H, W)`` bool (see :func:`encode`).
      Each pixel's views are built as pre-training builds them for the median-composite
      image date:

      * ``s2_rp``: the pixel's band series over all dates;
      * ``s2_image``: the reflect-padded ``crop_size`` crop around it of the per-pixel
        median over dates, so the embedding is independent of any single (possibly
        cloudy) acquisition;
      * ``s1_rp``: its Sentinel-1 series over all S1 dates, multilooked over
        ``spec.s1_multilook`` (:func:`~pimc_jax.data.radar.pixel_s1_series`);
      * ``s1_image``: the reflect-padded crop of the S1 acquisition nearest to the
        patch's median S2 date (:func:`~pimc_jax.data.views.s1_image_dates`).

    Raises:
      ValueError: one line: bad shapes, names or settings (as :func:`encode`), a
        Sentinel-1 view without a Patch holding Sentinel-1, an ``s1_image`` view without
        an S1 date within ``s1_max_gap_days``, or ``mode="fast"`` with an ``s1_image`` view.
    """
    spec = params.spec
    views = spec.views
    patch: Patch | None = None
    if isinstance(bands, Patch):
        settings = {"dates": dates, "band_names": band_names, "scale": scale, "nodata": nodata}
        given = [name for name, value in settings.items() if value is not None]
        if given:
            raise ValueError(f"encode_patch with a Patch takes no {given}: the patch has them")
        patch = bands
        dates, band_names, scale = patch.dates, patch.band_names, 1.0
        uses_s2 = "s2_rp" in views or "s2_image" in views
        # A model reading Sentinel-1 only needs just the patch's S2 dates and grid.
        bands = patch.reflectance() if uses_s2 else patch.bands[:, :, :, :0]
    if mode not in ENCODE_MODES:
        raise ValueError(f"mode must be one of {ENCODE_MODES}, got {mode!r}")
    if spec.uses_s1:
        if patch is None:
            raise ValueError(
                f"model.views={views} reads Sentinel-1: pass a Patch with s1_bands, s1_dates "
                f"and s1_band_names (pimc_jax.data.patches.Patch) instead of arrays"
            )
        if not patch.has_s1:
            raise ValueError(
                f"patch {patch.patch_id!r} holds no Sentinel-1 series, but model.views={views} "
                f"reads Sentinel-1"
            )
    if mode == "fast" and (views[1] != "s2_image" or "s1_image" in views):
        raise ValueError(
            f"mode='fast' computes an s2_image view read by tower 2 alongside no s1_image "
            f"view; this model's views are {views}: use mode='exact'"
        )
    if dates is None:
        raise ValueError("encode_patch needs dates ((T,) days or ISO strings) for the bands")
    if isinstance(chunk_pixels, bool) or not isinstance(chunk_pixels, (int, np.integer)):
        raise ValueError(f"chunk_pixels must be a positive integer, got {chunk_pixels!r}")
    if chunk_pixels < 1:
        raise ValueError(f"chunk_pixels must be a positive integer, got {chunk_pixels!r}")
    _check_scale(scale)
    indices_lib.check_numeric(bands, "bands")
    if not isinstance(bands, np.ndarray):
        bands = np.asarray(bands)
    if bands.ndim != 4:
        raise ValueError(f"bands must be (T, H, W, C), got shape {bands.shape}")
    num_dates, height, width, num_bands = bands.shape
    if "s2_rp" in views or "s2_image" in views:
        names = indices_lib.resolve_band_names(
            band_names if band_names is not None else spec.band_names
        )
        if len(names) != num_bands:
            raise ValueError(f"bands has {num_bands} channels but band_names has {len(names)}")
    rows_per_chunk = max(1, int(chunk_pixels) // max(width, 1))
    starts = list(range(0, height, rows_per_chunk))

    composite = None
    if "s2_image" in views:
        canonical = [indices_lib.canonical_band_name(n) for n in names]
        image_channels = []
        for wanted in spec.image_bands:
            name = indices_lib.canonical_band_name(wanted)
            if name not in canonical:
                raise ValueError(f"image band {wanted!r} is not among the patch bands {names}")
            image_channels.append(canonical.index(name))
        divisor = np.float32(spec.reflectance_scale if scale is None else 1.0)
        # The median composite of the image bands, block by block (a per-pixel median).
        composite = np.empty((height, width, len(image_channels)), np.float32)
        for start in starts:
            block = _to_reflectance(
                bands[:, start : start + rows_per_chunk, :, image_channels], scale, nodata, "bands"
            )
            with np.errstate(over="ignore", invalid="ignore"):
                composite[start : start + rows_per_chunk] = median_composite(
                    _implausible_to_nan(block / divisor)
                )
    s1_frame = _s1_image_frame(patch, spec, s1_max_gap_days) if "s1_image" in views else None
    fast = None
    if mode == "fast" and height * width:
        fast = _fast_image(params, composite, rows_per_chunk)

    def block_batch(start: int, stop: int) -> dict[str, Any]:
        """The inputs :func:`encode` takes for the pixels of rows ``start:stop``."""
        rows, cols = np.meshgrid(np.arange(start, stop), np.arange(width), indexing="ij")
        rows, cols = rows.ravel(), cols.ravel()
        centers = np.stack([rows, cols], axis=1)
        batch: dict[str, Any] = {}
        if "s2_rp" in views:
            block = _to_reflectance(bands[:, start:stop], scale, nodata, "bands")
            series = block.transpose(1, 2, 0, 3).reshape(rows.size, num_dates, num_bands)
            # Already reflectance when `scale` was given, and their no-data NaN.
            batch.update(bands=series, dates=dates, band_names=names)
        if composite is not None and fast is None:
            batch["image"] = extract_crops(composite, centers, spec.crop_size)
        if "s1_rp" in views:
            batch["s1_bands"] = _s1_series(patch, spec, rows, cols, int(chunk_pixels))
            batch.update(s1_dates=patch.s1_dates, s1_band_names=patch.s1_band_names)
        if s1_frame is not None:
            batch["s1_image"] = extract_crops(s1_frame, centers, spec.crop_size)
        return batch

    out: dict[str, np.ndarray] = {}
    blocks = starts
    if len(starts) > 1:
        blocks = progress_lib.progress(starts, desc="Encoding rows", unit="block", enabled=progress)
    for start in blocks:
        stop = min(start + rows_per_chunk, height)
        batch = block_batch(start, stop)
        result = encode(params, batch, scale=None if scale is None else 1.0, progress=False)
        if fast is not None:
            pixels = slice(start * width, stop * width)
            result["image_features"], result["image"] = fast[0][pixels], fast[1][pixels]
        for key, value in result.items():
            if key not in out:
                out[key] = np.empty((height, width, *value.shape[1:]), value.dtype)
            out[key][start:stop] = value.reshape(stop - start, width, *value.shape[1:])
    if not starts:  # an empty raster: shapes from an empty batch
        empty = encode(params, block_batch(0, 0), scale=None if scale is None else 1.0)
        out = {k: v.reshape(height, width, *v.shape[1:]) for k, v in empty.items()}
    return out


def encode_patches(
    params: PIMCParams, patches: Iterable[Patch], *, progress: bool | None = None
) -> Iterator[tuple[Patch, dict[str, np.ndarray]]]:
    """:func:`encode_patch` over many patches, one at a time, with one progress bar.

    Args:
      params: model parameters.
      patches: :class:`~pimc_jax.data.patches.Patch` objects (a list, or a lazy
        sequence such as PASTIS's ``LazyPatches``).
      progress: a bar over the patches (True, False, or None: on a terminal only).

    Yields:
      ``(patch, embeddings)`` with embeddings as :func:`encode_patch` returns them
      (``(H, W, D)`` float32 arrays and ``valid`` ``(H, W)`` bool), so that each result
      can be written (e.g. :func:`pimc_jax.data.geotiff.write_patch_geotiff`) and freed
      before the next patch is encoded.
    """
    total = len(patches) if isinstance(patches, Sized) else None
    for patch in progress_lib.progress(
        patches, total=total, desc="Encoding patches", unit="patch", enabled=progress
    ):
        yield patch, encode_patch(params, patch, progress=False)


def principal_components(
    embeddings: np.ndarray, k: int = 3, *, valid: np.ndarray | None = None
) -> np.ndarray:
    """The first ``k`` principal components of embeddings, e.g. for an RGB view in a GIS.

    Fitted with NumPy's SVD on the rows ``valid`` marks (all rows by default), centred on
    their mean. Each component's sign is fixed so that its largest loading is positive,
    so the result does not depend on the SVD's sign convention.

    Args:
      embeddings: ``(..., D)`` float array, e.g. ``(H, W, D)`` from :func:`encode_patch`.
      k: number of components, ``1 <= k <= D``.
      valid: optional ``(...)`` bool (``embeddings.shape[:-1]``), e.g. ``encode_patch``'s
        ``valid``; rows with False get NaN components and take no part in the fit.

    Returns:
      ``(..., k)`` float32 scores: ``(x − mean) · v_j`` for the top right-singular
      vectors ``v_j`` (in decreasing order of variance).

    Raises:
      ValueError: one line: ``embeddings`` is not a numeric ``(..., D)`` array, ``k`` out
        of range, ``valid`` of the wrong shape, or no valid finite row.
    """
    x = np.asarray(embeddings)
    if x.ndim < 1 or x.dtype.kind not in "iuf" or x.shape[-1] == 0:
        raise ValueError(f"embeddings must be a numeric (..., D) array, got {x.dtype} {x.shape}")
    dims = x.shape[-1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= dims:
        raise ValueError(f"k must be an integer in 1..{dims} (the embedding size), got {k!r}")
    rows = x.reshape(-1, dims).astype(np.float64)
    keep = np.all(np.isfinite(rows), axis=1)
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != x.shape[:-1] or valid.dtype != np.bool_:
            raise ValueError(
                f"valid must be bool with shape {x.shape[:-1]}, got {valid.dtype} {valid.shape}"
            )
        keep &= valid.reshape(-1)
    if not np.any(keep):
        raise ValueError("principal_components: no valid row with finite embeddings to fit on")
    mean = rows[keep].mean(axis=0)
    _, _, vt = np.linalg.svd(rows[keep] - mean, full_matrices=False)
    axes = vt[:k]
    if axes.shape[0] < k:  # fewer fitted rows than k: pad with further orthonormal axes
        basis = np.linalg.qr(np.concatenate([axes, np.eye(dims)], axis=0).T)[0].T
        axes = basis[:k]
    signs = np.sign(axes[np.arange(k), np.argmax(np.abs(axes), axis=1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
    scores = (rows - mean) @ axes.T
    scores[~keep] = np.nan
    return scores.astype(np.float32).reshape(*x.shape[:-1], k)
