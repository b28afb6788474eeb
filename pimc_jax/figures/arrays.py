"""The arrays behind the figures of a run: metrics read back from ``metrics.jsonl``, PCA
colours of dense embeddings, true colours of a patch, pixels worth showing, and those
pixels' index series and recurrence plots as the model sees them.

Pure NumPy on top of the library (:func:`~pimc_jax.preprocessing.series_to_plots` for the
plots); :mod:`pimc_jax.figures.drawing` turns these arrays into figures.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pimc_jax import indices as indices_lib
from pimc_jax.data.patches import Patch
from pimc_jax.data.views import clear_date_scores, median_composite
from pimc_jax.models import ModelSpec
from pimc_jax.pca import Principal, fit_principal
from pimc_jax.preprocessing import series_to_plots

TRUE_COLOUR_BANDS: tuple[str, ...] = ("B4", "B3", "B2")


def read_metrics(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The training metrics of a ``metrics.jsonl`` (:class:`pimc_jax.metrics.JsonlWriter`).

    Lines repeated for a step (a resumed run logs again the steps after its checkpoint)
    keep the last one; an incomplete last line (a crash mid-write) is skipped.

    Returns:
      ``steps`` ``(N,)`` int64, increasing, and metric name → ``(N,)`` float64 values
      (NaN where a line lacks the metric), names in first-seen order.
    """
    records: dict[int, dict[str, Any]] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            records[int(record["step"])] = record
    steps = np.asarray(sorted(records), np.int64)
    names: dict[str, None] = {}
    for step in steps:
        names.update((k, None) for k in records[int(step)] if k != "step")
    values = {
        name: np.asarray([float(records[int(s)].get(name, math.nan)) for s in steps], np.float64)
        for name in names
    }
    return steps, values


# The float64 PCA of the figures is the library's one (components, explained variance).
principal_components = fit_principal


def robust_unit_scale(
    values: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)
) -> np.ndarray:
    """Maps each last-axis channel of ``values`` to [0, 1] by its percentiles (clipped).

    The ``percentiles[0]`` percentile of a channel goes to 0 and the ``percentiles[1]``
    one to 1, so a few outliers do not wash out the rest; NaN is ignored. A constant
    channel becomes 0.5.

    Returns:
      float64 array of ``values``' shape, NaN where ``values`` is NaN.
    """
    values = np.asarray(values, np.float64)
    flat = values.reshape(-1, values.shape[-1])
    out = np.full_like(flat, np.nan)
    for c in range(flat.shape[1]):
        finite = flat[np.isfinite(flat[:, c]), c]
        if finite.size == 0:
            continue
        low, high = np.percentile(finite, percentiles)
        if high > low:
            out[:, c] = np.clip((flat[:, c] - low) / (high - low), 0.0, 1.0)
        else:
            out[:, c] = np.where(np.isfinite(flat[:, c]), 0.5, np.nan)
    return out.reshape(values.shape)


def pca_rgb(
    embeddings: np.ndarray,
    valid: np.ndarray | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> tuple[np.ndarray, Principal]:
    """Dense embeddings as an RGB image: their first three principal components.

    The PCA is fitted on the valid pixels only (:func:`principal_components`); each
    component is scaled to [0, 1] by its robust percentiles (:func:`robust_unit_scale`).

    Args:
      embeddings: ``(H, W, D)`` float embeddings (``encode_patch``'s ``rp`` or ``image``).
      valid: ``(H, W)`` bool pixels to fit and show; default all.

    Returns:
      ``(H, W, 3)`` float64 RGB in [0, 1] (invalid pixels mid-grey) and the PCA of the
      valid pixels.
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 3:
        raise ValueError(f"embeddings must be (H, W, D), got shape {embeddings.shape}")
    height, width, _ = embeddings.shape
    valid = np.ones((height, width), bool) if valid is None else np.asarray(valid, bool)
    pca = principal_components(embeddings[valid])
    rgb = np.full((height, width, 3), 0.5)
    rgb[valid] = robust_unit_scale(pca.projections, percentiles)
    return rgb, pca


def clear_dates(patch: Patch) -> np.ndarray:
    """The clearest half of a patch's dates (``ceil(T / 2)`` lowest
    :func:`~pimc_jax.data.views.clear_date_scores`, dates without any valid pixel left out
    unless all are so), the dates the ``random_clear`` image view draws from.

    Returns:
      ``(T',)`` int64 date indices, increasing.
    """
    scores = clear_date_scores(patch)
    ranked = np.argsort(scores, kind="stable")
    usable = max(1, int(np.isfinite(scores).sum()))
    return np.sort(ranked[: min(usable, (patch.num_dates + 1) // 2)]).astype(np.int64)


def true_colour(
    patch: Patch,
    bands: Sequence[str] = TRUE_COLOUR_BANDS,
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> np.ndarray:
    """True-colour composite of a patch: per-pixel median of B4, B3, B2 over its clear
    dates (:func:`clear_dates`), stretched to [0, 1] by percentiles over all three bands
    together (one stretch keeps the colour balance).

    Returns:
      ``(H, W, 3)`` float64 RGB in [0, 1]; pixels never observed are black.
    """
    columns = [indices_lib.band_index(patch.band_names, name) for name in bands]
    dates = clear_dates(patch)
    composite = median_composite(patch.reflectance(np.s_[dates])[..., columns])
    return stretch(composite, percentiles)


def stretch(image: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)) -> np.ndarray:
    """One percentile stretch over all channels to [0, 1]; NaN → 0."""
    image = np.asarray(image, np.float64)
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros_like(image)
    low, high = np.percentile(finite, percentiles)
    scaled = (image - low) / (high - low) if high > low else np.full_like(image, 0.5)
    return np.nan_to_num(np.clip(scaled, 0.0, 1.0), nan=0.0)


def default_pixels(patch: Patch, count: int = 3) -> list[tuple[int, int]]:
    """``count`` pixels worth showing: one per class, the most frequent classes first
    (background 0 last), each the pixel with the most same-class neighbours in its 5 × 5
    window (deep inside a parcel). Without labels: evenly spaced on the diagonal.

    Returns:
      ``(row, col)`` pairs.
    """
    if patch.labels is None:
        steps = np.linspace(0, min(patch.height, patch.width) - 1, count + 2)[1:-1]
        return [(int(round(s)), int(round(s))) for s in steps]
    labels = np.asarray(patch.labels)
    classes, counts = np.unique(labels, return_counts=True)
    order = sorted(range(classes.size), key=lambda i: (classes[i] == 0, -counts[i], classes[i]))
    # Outside the patch counts as another class, so parcels' inner pixels win over edges.
    padded = np.pad(labels, 2, constant_values=int(labels.min()) - 1)
    chosen = []
    for i in order[:count]:
        same = np.zeros(labels.shape, np.int64)
        for dr in range(5):
            for dc in range(5):
                same += padded[dr : dr + labels.shape[0], dc : dc + labels.shape[1]] == classes[i]
        same = np.where(labels == classes[i], same, -1)
        row, col = np.unravel_index(int(np.argmax(same)), labels.shape)
        chosen.append((int(row), int(col)))
    return chosen


@dataclasses.dataclass(frozen=True)
class PixelPlots:
    """Pixels' index series and the recurrence plots the library makes of them.

    Attributes:
      dates: ``(N, T)`` float days of the padded series (the model's input).
      values: ``(N, T, K)`` float index values, NaN where not counted (masked out,
        invalid band or denominator).
      plots: ``(N, S', S', K·P)`` float32 plots from
        :func:`~pimc_jax.preprocessing.series_to_plots`; channel ``p·K + k`` is kind
        ``kinds[p]`` of index ``indices[k]``.
      indices: the ``K`` index names. kinds: the ``P`` plot kinds.
    """

    dates: np.ndarray
    values: np.ndarray
    plots: np.ndarray
    indices: tuple[str, ...]
    kinds: tuple[str, ...]


def pixel_plots(
    spec: ModelSpec,
    bands: np.ndarray,
    dates: np.ndarray,
    mask: np.ndarray,
    band_names: Sequence[str],
) -> PixelPlots:
    """Index series and recurrence plots of ``(N, T, C)`` reflectance series, computed as
    the model's input is (:func:`~pimc_jax.preprocessing.series_to_plots` with ``spec``).

    Args:
      bands: ``(N, T, C)`` float reflectance (NaN = no-data). dates: ``(N, T)`` days.
      mask: ``(N, T)`` bool real acquisitions. band_names: the ``C`` band names.
    """
    bands = np.asarray(bands, np.float32)
    dates = np.asarray(dates, np.float32)
    mask = np.asarray(mask, bool)
    names = tuple(band_names)
    values, ok = indices_lib.vegetation_indices(
        bands, names, spec.indices, scale=1.0, return_mask=True
    )
    counted = mask & np.asarray(ok) & np.isfinite(dates)
    values = np.where(counted[..., None], np.asarray(values, np.float64), np.nan)
    plots = np.asarray(series_to_plots(spec, bands, dates, mask, names, scale=1.0))
    return PixelPlots(dates, values, plots, tuple(spec.indices), tuple(spec.rp_channels))
