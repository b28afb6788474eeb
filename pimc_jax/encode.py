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
identical inputs, e.g. no-data areas, share one computation). An image view read by a
tower with ``padding="valid"`` (:mod:`pimc_jax.valid_tower`) is encoded in one fully
convolutional pass of the tower's own Flax module, exact by construction
(:mod:`pimc_jax.encode_dense`). For ``"same"`` towers (the paper's ResNet, and every
checkpoint written before the option existed) the image view has two modes
(:data:`ENCODE_MODES`):

* ``"exact"`` (the default): every pixel's reflect-padded ``crop_size`` crop goes
  through the image tower on its own, exactly as in training.
* ``"fast"``: the image tower runs once, fully convolutionally, over the whole
  reflect-padded median composite, and each pixel's features are pooled over its crop
  window (:func:`dense_image_features`): an approximation whose two differences from
  ``"exact"`` :mod:`pimc_jax.windowed` describes; ``bench/dense_encode.py``
  measures its agreement with ``"exact"`` (cosine similarity, linear-probe accuracy).

Model inputs are built and checked by :mod:`pimc_jax.encode_inputs`;
:func:`principal_components` lives in :mod:`pimc_jax.pca`.
"""

from __future__ import annotations

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
from pimc_jax.data.patches import Patch
from pimc_jax.data.views import PLOT_VIEWS, VIEW_KEYS, extract_crops, median_composite
from pimc_jax.encode_dense import (  # noqa: F401  (dense_*: public here too)
    _fast_image,
    dense_image_features,
    dense_margin,
    dense_view,
    is_dense_exact,
)
from pimc_jax.encode_inputs import (  # noqa: F401  (_unique_rows: re-exported for tests)
    _check_scale,
    _encode_distinct,
    _image_inputs,
    _implausible_to_nan,
    _radar_inputs,
    _s1_image_inputs,
    _s1_series,
    _series_inputs,
    _to_reflectance,
    _unique_rows,
    s1_image_frame,
)
from pimc_jax.models import PIMC, PIMCParams
from pimc_jax.pca import principal_components  # noqa: F401  (public here too)
from pimc_jax.preprocessing import (
    normalize_crops,
    normalize_s1_crops,
    radar_plots,
    series_to_plots,
)
from pimc_jax.vocabulary import IMAGE_VIEWS, S2_IMAGE_VIEWS

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
    normalize = normalize_crops if view in S2_IMAGE_VIEWS else normalize_s1_crops
    return _apply_tower(params, tower, normalize(params.spec, image))


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
    for key in dict.fromkeys(_VIEW_INPUT.values()):
        readers = [view for view, input_key in _VIEW_INPUT.items() if input_key == key]
        if key in batch and not set(readers) & set(spec.views):
            raise ValueError(
                f"batch[{key!r}] feeds the {' or '.join(readers)} view, but this model's "
                f"towers read model.views={spec.views}"
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
            inputs_of = _image_inputs if view in S2_IMAGE_VIEWS else _s1_image_inputs
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
        no tower ``s1_image``). An image view read by a ``padding="valid"`` tower is
        computed in one exact fully convolutional pass whatever the mode. The series
        views are exact in both.
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
        an S1 date within ``s1_max_gap_days``, or ``mode="fast"`` with an image view in tower 1.
    """
    spec = params.spec
    views = spec.views
    s2_image_views = set(views) & set(S2_IMAGE_VIEWS)
    patch: Patch | None = None
    if isinstance(bands, Patch):
        settings = {"dates": dates, "band_names": band_names, "scale": scale, "nodata": nodata}
        given = [name for name, value in settings.items() if value is not None]
        if given:
            raise ValueError(f"encode_patch with a Patch takes no {given}: the patch has them")
        patch = bands
        dates, band_names, scale = patch.dates, patch.band_names, 1.0
        uses_s2 = "s2_rp" in views or bool(s2_image_views)
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
    # Image views of padding="valid" towers: one exact dense pass, whatever the mode.
    dense_towers = [tower for tower in range(len(views)) if is_dense_exact(spec, tower)]
    dense_views = {views[tower] for tower in dense_towers}
    if mode == "fast" and (dense_views >= set(IMAGE_VIEWS) & set(views)):
        mode = "exact"  # nothing left to approximate
    if mode == "fast" and (views[1] != "s2_image" or views[0] in IMAGE_VIEWS):
        raise ValueError(
            f"mode='fast' computes an s2_image view read by tower 2 beside a plot tower; "
            f"this model's views are {views}: use mode='exact'"
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
    if "s2_rp" in views or s2_image_views:
        names = indices_lib.resolve_band_names(
            band_names if band_names is not None else spec.band_names
        )
        if len(names) != num_bands:
            raise ValueError(f"bands has {num_bands} channels but band_names has {len(names)}")
    rows_per_chunk = max(1, int(chunk_pixels) // max(width, 1))
    starts = list(range(0, height, rows_per_chunk))

    composite = None
    if s2_image_views:
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
    s1_frame = s1_image_frame(patch, spec, s1_max_gap_days) if "s1_image" in views else None
    fast = None
    if mode == "fast" and height * width:
        fast = _fast_image(params, composite, rows_per_chunk)
    dense: dict[int, tuple[np.ndarray, ...]] = {}
    for tower in dense_towers if height * width else ():
        frame = composite if views[tower] in S2_IMAGE_VIEWS else s1_frame
        dense[tower] = dense_view(params, frame, tower, rows_per_chunk)

    def block_batch(start: int, stop: int, every_view: bool = False) -> dict[str, Any]:
        """The inputs :func:`encode` takes for the pixels of rows ``start:stop`` (image views
        computed densely left out unless ``every_view``)."""
        rows, cols = np.meshgrid(np.arange(start, stop), np.arange(width), indexing="ij")
        rows, cols = rows.ravel(), cols.ravel()
        centers = np.stack([rows, cols], axis=1)
        batch: dict[str, Any] = {}
        if "s2_rp" in views:
            block = _to_reflectance(bands[:, start:stop], scale, nodata, "bands")
            series = block.transpose(1, 2, 0, 3).reshape(rows.size, num_dates, num_bands)
            # Already reflectance when `scale` was given, and their no-data NaN.
            batch.update(bands=series, dates=dates, band_names=names)
        crops = every_view or (fast is None and not s2_image_views <= dense_views)
        if composite is not None and crops:
            batch["image"] = extract_crops(composite, centers, spec.crop_size)
        if "s1_rp" in views:
            batch["s1_bands"] = _s1_series(patch, spec, rows, cols, int(chunk_pixels))
            batch.update(s1_dates=patch.s1_dates, s1_band_names=patch.s1_band_names)
        if s1_frame is not None and (every_view or "s1_image" not in dense_views):
            batch["s1_image"] = extract_crops(s1_frame, centers, spec.crop_size)
        return batch

    out: dict[str, np.ndarray] = {}
    blocks = starts
    if len(starts) > 1:
        blocks = progress_lib.progress(starts, desc="Encoding rows", unit="block", enabled=progress)
    for start in blocks:
        stop = min(start + rows_per_chunk, height)
        batch = block_batch(start, stop)
        result = {}
        if batch:
            result = encode(params, batch, scale=None if scale is None else 1.0, progress=False)
        pixels = slice(start * width, stop * width)
        if fast is not None:
            result["image_features"], result["image"] = fast[0][pixels], fast[1][pixels]
        for tower, (features, embeddings, crops_valid) in dense.items():
            name, features_name = _TOWER_OUTPUTS[tower]
            result[features_name], result[name] = features[pixels], embeddings[pixels]
            result[f"{name}_valid"] = crops_valid[pixels]
        for key, value in result.items():
            if key not in out:
                out[key] = np.empty((height, width, *value.shape[1:]), value.dtype)
            out[key][start:stop] = value.reshape(stop - start, width, *value.shape[1:])
    if not starts:  # an empty raster: shapes from an empty batch
        empty = encode(params, block_batch(0, 0, True), scale=None if scale is None else 1.0)
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
