"""Optical spectral indices (NDVI, EVI, SAVI, NDMI, NBR, NDRE, NDWI) in ``jax.numpy``."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from pimc_jax.indices.bands import (
    INDEX_BANDS,
    PAPER_INDICES,
    PLAUSIBLE_INDEX,
    PLAUSIBLE_REFLECTANCE,
    band_index,
    check_numeric,
    ready_made_index,
    resolve_band_names,
    resolve_indices,
)


def _safe_ratio(
    numerator: jnp.ndarray, denominator: jnp.ndarray, valid: jnp.ndarray, eps: float
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``numerator / denominator`` where valid and ``|denominator| >= eps``, else 0.

    Double ``where``: the division only ever sees a safe denominator, so neither the
    value nor its gradient can become inf/NaN.
    """
    ok = valid & (jnp.abs(denominator) >= eps)
    safe_denominator = jnp.where(ok, denominator, 1.0)
    safe_numerator = jnp.where(ok, numerator, 0.0)
    return jnp.where(ok, safe_numerator / safe_denominator, 0.0), ok


def vegetation_indices(
    bands: jnp.ndarray,
    band_names: str | Sequence[str],
    indices: Sequence[str] = PAPER_INDICES,
    *,
    scale: float = 1.0,
    nodata: float | None = None,
    eps: float = 1e-6,
    return_mask: bool = False,
) -> jnp.ndarray | tuple[jnp.ndarray, jnp.ndarray]:
    """Computes spectral indices from a band stack.

    With reflectance ``ρ = bands / scale`` and NIR = B8, R = B4, B = B2, G = B3, RE = B5,
    SWIR1 = B11, SWIR2 = B12 (looked up by name):

    - NDVI = (NIR − R) / (NIR + R)
    - EVI  = 2.5 (NIR − R) / (NIR + 6 R − 7.5 B + 1)
    - SAVI = 1.5 (NIR − R) / (NIR + R + 0.5)
    - NDMI = (NIR − SWIR1) / (NIR + SWIR1)   (moisture)
    - NBR  = (NIR − SWIR2) / (NIR + SWIR2)   (burn ratio)
    - NDRE = (NIR − RE) / (NIR + RE)         (red edge)
    - NDWI = (G − NIR) / (G + NIR)           (open water)

    A band named like an index (``"NDVI"``) is taken as that index, ``band / scale``,
    instead of computing it (so a ready-made NDVI stack needs no reflectance bands).

    Args:
      bands: ``(..., C)`` array, bands on the last axis, any leading shape; cast to float32.
      band_names: ``C`` band names, or a table name from :data:`BAND_TABLES`.
      indices: names of the indices to compute, in output order; any of
        :data:`INDEX_NAMES` (case-insensitive).
      scale: ``bands`` are divided by it to get reflectance (10 000 for PASTIS digital
        numbers; 1 for data already in [0, 1]).
      nodata: raw band value (before scaling) marking missing data, e.g. ``-10000``;
        NaN and ±inf are always treated as missing, and so is a reflectance
        ``bands / scale`` outside :data:`PLAUSIBLE_REFLECTANCE` (a ready-made index band
        outside :data:`PLAUSIBLE_INDEX`).
      eps: an index whose denominator satisfies ``|denominator| < eps`` (in reflectance
        units) is invalid.
      return_mask: also return the validity mask.

    Returns:
      ``values``: ``(..., K)`` float32, ``K = len(indices)``. ``values[..., k]`` is index
      ``k`` where it is valid and exactly ``0.0`` where it is not. Index ``k`` is invalid
      at a sample when one of the bands it reads is missing (NaN, inf, equal to ``nodata``
      or outside the plausible range), or its denominator is below ``eps`` in magnitude.
      Values are not clipped (the normalised differences and SAVI lie in [−1, 1] and
      [−1.5, 1.5] for reflectance in [0, 1]; EVI is unbounded). If ``return_mask``:
      ``(values, valid)`` with ``valid`` ``(...,)`` bool, True where *all* ``K`` indices
      are valid. Values and gradients are finite for every input (``|EVI| < 7 / eps``,
      the other indices ``< 5 / eps``).

    Raises:
      ValueError: unknown index name, a needed band missing from ``band_names``,
        ``len(band_names)`` not matching ``bands.shape[-1]``, a non-numeric ``bands``
        dtype, or ``scale`` not a finite positive number.
    """
    check_numeric(bands, "bands")
    if isinstance(scale, (int, float, np.number)) and not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite positive number, got {scale!r}")
    names = resolve_band_names(band_names)
    requested = resolve_indices(tuple(indices), names) if len(indices) else ()
    if not requested:
        raise ValueError("indices must name at least one index")
    bands = jnp.asarray(bands, dtype=jnp.float32)
    if bands.ndim < 1 or bands.shape[-1] != len(names):
        raise ValueError(
            f"bands of shape {bands.shape} must have {len(names)} channels on its last axis, "
            f"one per band name {names}"
        )

    def read(position: int, plausible: tuple[float, float]) -> tuple[jnp.ndarray, jnp.ndarray]:
        raw = bands[..., position]
        ok = jnp.isfinite(raw)
        if nodata is not None:
            ok = ok & (raw != nodata)
        # Zero out missing samples before any arithmetic so no NaN enters a gradient.
        value = jnp.where(ok, raw, 0.0) / scale
        # A huge finite raw value can overflow the division; the range test catches it.
        ok = ok & (value >= plausible[0]) & (value <= plausible[1])
        return jnp.where(ok, value, 0.0), ok

    reflectance: dict[str, tuple[jnp.ndarray, jnp.ndarray]] = {}

    def band(name: str) -> tuple[jnp.ndarray, jnp.ndarray]:
        if name not in reflectance:
            reflectance[name] = read(band_index(names, name), PLAUSIBLE_REFLECTANCE)
        return reflectance[name]

    outputs = []
    mask = None
    for name in requested:
        ready = ready_made_index(names, name)
        if name not in INDEX_BANDS:  # a raw band (resolve_indices checked it exists)
            value, ok = band(name)
        elif ready is not None:
            value, ok = read(ready, PLAUSIBLE_INDEX)
        elif name in ("ndvi", "evi", "savi"):
            (nir, nir_ok), (red, red_ok) = band("B8"), band("B4")
            if name == "ndvi":
                value, ok = _safe_ratio(nir - red, nir + red, nir_ok & red_ok, eps)
            elif name == "evi":
                blue, blue_ok = band("B2")
                value, ok = _safe_ratio(
                    2.5 * (nir - red),
                    nir + 6.0 * red - 7.5 * blue + 1.0,
                    nir_ok & red_ok & blue_ok,
                    eps,
                )
            else:
                value, ok = _safe_ratio(1.5 * (nir - red), nir + red + 0.5, nir_ok & red_ok, eps)
        else:  # a normalised difference of two bands
            (a, a_ok), (b, b_ok) = (band(n) for n in INDEX_BANDS[name])
            value, ok = _safe_ratio(a - b, a + b, a_ok & b_ok, eps)
        outputs.append(value)
        mask = ok if mask is None else mask & ok
    values = jnp.stack(outputs, axis=-1).astype(jnp.float32)
    if return_mask:
        return values, mask
    return values
