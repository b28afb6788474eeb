"""Figures from a workdir or a config: ``python -m pimc_jax.plot KIND --workdir=DIR``.

=============  ====================================  ==========================================
``KIND``       reads                                 draws (default file in the workdir)
=============  ====================================  ==========================================
``curves``     ``metrics.jsonl`` (pre-training)      every logged metric over steps
                                                     (``curves.png``)
``confusion``  ``results.json`` (classification)     confusion matrix, per-class F1
                                                     (``confusion.png``)
``forecast``   ``results.json`` (forecasting)        test windows, targets, each model's
                                                     forecast (``forecast_examples.png``)
``embeddings`` checkpoint + the run's data           a patch's dense embeddings of both towers
                                                     as PCA RGB maps beside its true colours
                                                     and labels (``embeddings.png``)
``plots``      the run's data and plot options       recurrence plots of a few pixels beside
                                                     their index series
                                                     (``recurrence_plots.png``)
``pairs``      a pre-training config                 sample pre-training pairs: image crop,
                                                     series and plots (``pairs.png``)
=============  ====================================  ==========================================

``--config=FILE[:VARIANTS]`` stands in for a workdir's config (``plots`` and ``pairs``
need no trained model: ``python -m pimc_jax.plot plots --config=configs/pretrain.py``);
``--out=FILE.png`` writes elsewhere. A workdir that lacks what a kind needs gives one
``FATAL: ...`` line and exit status 1.

The figure builders (:func:`curves_figure`, :func:`embeddings_figure`,
:func:`recurrence_figure`, :func:`pairs_figure`, and the evaluation figures of
:mod:`pimc_jax.evaluation.figures`) take arrays and return matplotlib figures drawn with
the Agg renderer (no display); :func:`draw` is the command's entry point. The arrays
come from the library itself: :func:`pimc_jax.preprocessing.series_to_plots` for plots,
:func:`pimc_jax.encode.encode_patch` for embeddings,
:class:`~pimc_jax.data.pairs.PairSampler` (built by
:func:`pimc_jax.train.build_pretraining`) for pairs. Nothing in the package imports this
module.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ml_collections
import numpy as np

from pimc_jax import indices as indices_lib
from pimc_jax.checkpoint import checkpoint_steps, load_checkpoint, locate_checkpoint, read_meta
from pimc_jax.data import load_patches
from pimc_jax.data.patches import Patch
from pimc_jax.data.pipeline import step_rng
from pimc_jax.data.views import clear_date_scores, median_composite, pad_series
from pimc_jax.encode import encode_patch
from pimc_jax.evaluation.figures import (
    CONFUSION_FILE,
    DEFAULT_DPI,
    FORECAST_FILE,
    confusion_figure,
    forecast_figure,
    new_figure,
    save_figure,
)
from pimc_jax.launcher import load_config, user_error_line
from pimc_jax.models import ModelSpec
from pimc_jax.preprocessing import series_to_plots
from pimc_jax.train import build_pretraining

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

KINDS: tuple[str, ...] = ("curves", "confusion", "forecast", "embeddings", "plots", "pairs")
DEFAULT_FILES: dict[str, str] = {
    "curves": "curves.png",
    "confusion": CONFUSION_FILE,
    "forecast": FORECAST_FILE,
    "embeddings": "embeddings.png",
    "plots": "recurrence_plots.png",
    "pairs": "pairs.png",
}
TRUE_COLOUR_BANDS: tuple[str, ...] = ("B4", "B3", "B2")
# Plot kinds' colour maps: distances are non-negative, differences signed, levels any value.
_PLOT_COLOURMAPS = {"distance": "magma", "difference": "RdBu_r", "level": "viridis"}

# --------------------------------------------------------------------------------------
# Arrays behind the figures.


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


@dataclasses.dataclass(frozen=True)
class Principal:
    """The first principal components of a set of vectors.

    Attributes:
      projections: ``(N, P)`` float64 coordinates of the centred vectors on the components.
      components: ``(P, D)`` float64 unit directions, by decreasing variance; each signed
        so that its largest-magnitude loading is positive.
      explained: ``(P,)`` float64 share of the total variance each component carries.
    """

    projections: np.ndarray
    components: np.ndarray
    explained: np.ndarray


def principal_components(vectors: np.ndarray, count: int = 3) -> Principal:
    """PCA of ``(N, D)`` vectors by NumPy SVD of the centred matrix.

    Components beyond ``min(N, D)`` are zero (zero projections, zero explained share).
    """
    x = np.asarray(vectors, np.float64)
    if x.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got shape {x.shape}")
    num, dim = x.shape
    centred = x - x.mean(axis=0) if num else x
    components = np.zeros((count, dim))
    explained = np.zeros(count)
    if num >= 2 and dim >= 1:
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        kept = min(count, vt.shape[0])
        components[:kept] = vt[:kept]
        total = float(np.sum(singular**2))
        if total > 0:
            explained[:kept] = singular[:kept] ** 2 / total
    # SVD signs are arbitrary: make each component's largest loading positive.
    largest = components[np.arange(count), np.argmax(np.abs(components), axis=1)]
    components *= np.where(largest < 0, -1.0, 1.0)[:, None]
    return Principal(centred @ components.T, components, explained)


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
    return _stretch(composite, percentiles)


def _stretch(image: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)) -> np.ndarray:
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


# --------------------------------------------------------------------------------------
# Figures.

# Panels of the training curves: title → metric names drawn together.
_CURVE_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("InfoNCE loss", ("loss",)),
    ("in-batch retrieval top-1", ("rp_to_image_top1", "image_to_rp_top1")),
    ("temperature τ", ("temperature",)),
    ("learning rate", ("learning_rate",)),
    ("gradient norm", ("grad_norm",)),
    ("parameter norm", ("param_norm",)),
    ("throughput (pairs/s)", ("pairs_per_second",)),
)


def curves_figure(
    steps: np.ndarray,
    metrics: Mapping[str, np.ndarray],
    *,
    chance: float | None = None,
    title: str = "Pre-training curves",
) -> Figure:
    """Training curves: one panel per metric group of :data:`_CURVE_PANELS` present, then
    one per other metric, three panels a row.

    Args:
      steps: ``(N,)`` logged steps. metrics: name → ``(N,)`` values (:func:`read_metrics`).
      chance: retrieval accuracy of a random encoder (1 / global batch size), drawn as a
        dotted line on the retrieval panel when given.

    Returns:
      The figure; each panel's lines hold the metrics in the order listed.
    """
    panels = [(t, [n for n in names if n in metrics]) for t, names in _CURVE_PANELS]
    panels = [(t, names) for t, names in panels if names]
    grouped = {n for _, names in panels for n in names}
    panels += [(name, [name]) for name in metrics if name not in grouped]
    if not panels:
        raise ValueError("no metric to draw")
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = new_figure(3.8 * columns, 2.6 * rows + 0.4)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, (panel_title, names) in zip(axes.ravel(), panels, strict=False):
        for name in names:
            ax.plot(steps, metrics[name], marker=".", markersize=4, label=name)
        if chance is not None and "rp_to_image_top1" in names:
            ax.axhline(chance, color="grey", linestyle=":", label=f"chance (1/{1 / chance:.0f})")
        if panel_title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(names[0] if len(names) == 1 else "top-1 accuracy")
        ax.grid(alpha=0.3)
        if len(names) > 1 or chance is not None and "rp_to_image_top1" in names:
            ax.legend(fontsize=7)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(title, fontsize=11)
    return figure


def _label_colours(num_classes: int) -> Any:
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    name, size = ("tab10", 10) if num_classes <= 10 else ("tab20", 20)
    table = colormaps[name](np.arange(size))
    return ListedColormap(table[np.arange(num_classes) % size])


def embeddings_figure(
    patch: Patch,
    encoded: Mapping[str, np.ndarray],
    *,
    class_names: Sequence[str] = (),
    title: str = "",
) -> Figure:
    """A patch's dense embeddings, both towers, as PCA RGB maps beside its true colours
    and (when it has them) its labels.

    Args:
      patch: the patch (true colours from :func:`true_colour`).
      encoded: :func:`~pimc_jax.encode.encode_patch` of the patch: ``rp`` and ``image``
        ``(H, W, D)``, ``valid`` ``(H, W)``.
      class_names: label names for the label map's colour bar.

    Returns:
      The figure; the RP and image PCA panels' images hold :func:`pca_rgb` of
      ``encoded["rp"]`` (valid pixels) and ``encoded["image"]`` (all pixels).
    """
    panels = 3 + (patch.labels is not None)
    figure = new_figure(3.3 * panels + (1.2 if patch.labels is not None else 0.2), 3.9)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    axes[0].imshow(true_colour(patch), interpolation="nearest")
    axes[0].set_title("true colour (B4, B3, B2)\nmedian of the clear dates", fontsize=9)
    column = 1
    if patch.labels is not None:
        labels = np.asarray(patch.labels)
        num_classes = max(int(labels.max()) + 1, len(class_names), 1)
        image = axes[1].imshow(
            labels,
            cmap=_label_colours(num_classes),
            vmin=-0.5,
            vmax=num_classes - 0.5,
            interpolation="nearest",
        )
        present = np.unique(labels)
        bar = figure.colorbar(image, ax=axes[1], shrink=0.85, ticks=present)
        names = list(class_names) + [str(k) for k in range(len(class_names), num_classes)]
        bar.ax.set_yticklabels([names[k] for k in present], fontsize=7)
        axes[1].set_title("labels", fontsize=9)
        column = 2
    valid = np.asarray(encoded["valid"], bool)
    for ax, (key, name, mask) in zip(
        axes[column:],
        (("rp", "RP tower", valid), ("image", "image tower", None)),
        strict=True,
    ):
        rgb, pca = pca_rgb(encoded[key], mask)
        ax.imshow(rgb, interpolation="nearest")
        share = ", ".join(f"{100 * v:.0f}%" for v in pca.explained)
        ax.set_title(f"{name} embeddings: PC1-3 as RGB\n(variance {share})", fontsize=9)
    for ax in axes:
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    figure.suptitle(title or f"Patch {patch.patch_id!r}: dense embeddings", fontsize=11)
    return figure


def _plot_limits(kind: str, values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    if kind == "difference":
        top = float(np.max(np.abs(finite))) or 1.0
        return -top, top
    low, high = float(finite.min()), float(finite.max())
    if kind == "distance":
        low = 0.0
    return (low, high) if high > low else (low - 0.5, low + 0.5)


def _series_panel(
    ax: Axes,
    dates: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    *,
    legend: bool = True,
) -> None:
    """Each index over the dates where it counts; ``values`` ``(T, K)``."""
    days = np.asarray(np.round(dates), np.int64).astype("datetime64[D]")
    for k, name in enumerate(names):
        keep = np.isfinite(values[:, k])
        ax.plot(days[keep], values[keep, k], marker=".", markersize=3, linewidth=1, label=name)
    ax.set_xlabel("date")
    ax.set_ylabel("index value")
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=6, ncol=2 if len(names) > 4 else 1)
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")
        label.set_fontsize(7)


def recurrence_figure(data: PixelPlots, pixel_titles: Sequence[str], *, title: str = "") -> Figure:
    """Recurrence plots of pixels beside their index series.

    One block of rows per pixel: the index series over the dates on the left, then one
    row per plot kind with one panel per index (every plot channel of the model input),
    coloured on one scale per row (colour bar at its right: ``magma`` for distances,
    a diverging map centred on 0 for differences, ``viridis`` for levels).

    Args:
      data: :func:`pixel_plots` of ``N`` pixels.
      pixel_titles: ``N`` block titles.

    Returns:
      The figure; ``figure.subfigs[n]`` is pixel ``n``'s block, whose panel for kind
      ``p`` and index ``k`` shows plot channel ``p·K + k``.
    """
    num = data.plots.shape[0]
    num_indices, num_kinds = len(data.indices), len(data.kinds)
    if len(pixel_titles) != num:
        raise ValueError(f"{num} pixels but {len(pixel_titles)} titles")
    panel = 1.15
    width = 3.4 + panel * num_indices + 0.9
    height_block = panel * num_kinds + 0.75
    figure = new_figure(width, height_block * num + (0.35 if title else 0.0))
    blocks = np.atleast_1d(figure.subfigures(num, 1))
    for n, block in enumerate(blocks):
        grid = block.add_gridspec(
            num_kinds, num_indices + 1, width_ratios=(3.0,) + (1.0,) * num_indices
        )
        series_ax = block.add_subplot(grid[:, 0])
        _series_panel(series_ax, data.dates[n], data.values[n], data.indices)
        series_ax.set_title("index series (counted dates)", fontsize=8)
        for p, kind in enumerate(data.kinds):
            channels = data.plots[n, ..., p * num_indices : (p + 1) * num_indices]
            low, high = _plot_limits(kind, channels)
            row_axes = []
            image = None
            for k in range(num_indices):
                ax = block.add_subplot(grid[p, k + 1])
                image = ax.imshow(
                    channels[..., k],
                    cmap=_PLOT_COLOURMAPS.get(kind, "viridis"),
                    vmin=low,
                    vmax=high,
                    interpolation="nearest",
                )
                ax.set_xticks([])
                ax.set_yticks([])
                if p == 0:
                    ax.set_title(data.indices[k].upper(), fontsize=8)
                if k == 0:
                    ax.set_ylabel(kind, fontsize=8)
                row_axes.append(ax)
            bar = block.colorbar(image, ax=row_axes, shrink=0.9, pad=0.02, aspect=12)
            bar.ax.tick_params(labelsize=6)
        block.suptitle(pixel_titles[n], fontsize=9)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure


def _rgb_channels(image_bands: Sequence[str]) -> list[int]:
    """Positions of B4, B3, B2 among ``image_bands``, else the first (up to) three bands."""
    try:
        return [indices_lib.band_index(image_bands, name) for name in TRUE_COLOUR_BANDS]
    except ValueError:
        return list(range(min(3, len(image_bands))))


def pairs_figure(
    batch: Mapping[str, np.ndarray],
    data: PixelPlots,
    image_bands: Sequence[str],
    *,
    title: str = "Pre-training pairs",
) -> Figure:
    """Pre-training pairs: per row, the image crop (centre pixel boxed), the series, and
    the plots of the first index (one panel per plot kind, one colour scale per column).

    Args:
      batch: a :class:`~pimc_jax.data.pairs.PairSampler` batch of ``N`` pairs (``image``
        ``(N, k, k, Ci)`` reflectance crops are what is drawn from it).
      data: :func:`pixel_plots` of the batch's series.
      image_bands: the crops' ``Ci`` band names (true colour when B4, B3, B2 are there).
    """
    crops = np.asarray(batch["image"], np.float64)
    num, size = crops.shape[0], crops.shape[1]
    channels = _rgb_channels(image_bands)
    rgb = _stretch(crops[..., channels])
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    num_kinds = len(data.kinds)
    figure = new_figure(2.0 + 3.6 + 1.8 * num_kinds, 1.75 * num + 1.3)
    grid = figure.add_gridspec(num, 2 + num_kinds, width_ratios=(1.0, 2.0) + (1.0,) * num_kinds)
    limits = [
        _plot_limits(kind, data.plots[..., p * len(data.indices)])
        for p, kind in enumerate(data.kinds)
    ]
    columns: list[list[Axes]] = [[] for _ in data.kinds]
    images: list[Any] = [None] * num_kinds
    from matplotlib.patches import Rectangle

    for n in range(num):
        crop_ax = figure.add_subplot(grid[n, 0])
        crop_ax.imshow(rgb[n], interpolation="nearest")
        centre = size // 2
        crop_ax.add_patch(
            Rectangle((centre - 0.5, centre - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1)
        )
        crop_ax.set_xticks([])
        crop_ax.set_yticks([])
        crop_ax.set_ylabel(f"pair {n}", fontsize=8)
        series_ax = figure.add_subplot(grid[n, 1])
        _series_panel(series_ax, data.dates[n], data.values[n], data.indices, legend=n == 0)
        if n < num - 1:
            series_ax.set_xlabel("")
        for p, kind in enumerate(data.kinds):
            ax = figure.add_subplot(grid[n, 2 + p])
            images[p] = ax.imshow(
                data.plots[n, ..., p * len(data.indices)],
                cmap=_PLOT_COLOURMAPS.get(kind, "viridis"),
                vmin=limits[p][0],
                vmax=limits[p][1],
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            columns[p].append(ax)
            if n == 0:
                ax.set_title(f"{data.indices[0].upper()} {kind}", fontsize=8)
        if n == 0:
            crop_ax.set_title(f"{size}×{size} crop", fontsize=8)
            series_ax.set_title("index series", fontsize=8)
    for p in range(num_kinds):
        bar = figure.colorbar(images[p], ax=columns[p], location="bottom", shrink=0.9, aspect=10)
        bar.ax.tick_params(labelsize=6)
        bar.set_label(f"{data.indices[0].upper()} {data.kinds[p]}", fontsize=7)
    figure.suptitle(title, fontsize=11)
    return figure


# --------------------------------------------------------------------------------------
# The command: workdir contents → figure.


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def run_config(workdir: Path | None, config_path: str | None = None) -> ml_collections.ConfigDict:
    """The config behind a workdir: ``config_path`` when given, else the latest
    checkpoint's, ``config.json`` (pre-training) or ``results.json``'s (evaluation)."""
    if config_path:
        return load_config(config_path)
    if workdir is None:
        raise ValueError("pass --workdir=DIR or --config=FILE")
    if checkpoint_steps(workdir):
        config = read_meta(locate_checkpoint(workdir)).get("config")
        if config:
            return ml_collections.ConfigDict(config)
    if (workdir / "config.json").is_file():
        return ml_collections.ConfigDict(_read_json(workdir / "config.json"))
    if (workdir / "results.json").is_file():
        config = _read_json(workdir / "results.json").get("config")
        if config:
            return ml_collections.ConfigDict(config)
    raise FileNotFoundError(
        f"{workdir} holds no config (checkpoints/, config.json or results.json); pass --config=FILE"
    )


def _plot_spec(
    workdir: Path | None, config: ml_collections.ConfigDict, band_names: Sequence[str]
) -> ModelSpec:
    """The trained model's spec when the workdir has a checkpoint, else the config's."""
    if workdir is not None and checkpoint_steps(workdir):
        return ModelSpec.from_dict(read_meta(locate_checkpoint(workdir))["spec"])
    bands = tuple(config.data.image_bands)
    return ModelSpec.from_config(
        config, band_names=band_names, image_mean=(0.0,) * len(bands), image_std=(1.0,) * len(bands)
    )


def _one_patch(config: ml_collections.ConfigDict, number: int) -> Patch:
    patches = load_patches(config.data, lazy=True)
    if not 0 <= number < len(patches):
        raise ValueError(f"--patch={number}: the run's data has patches 0..{len(patches) - 1}")
    return patches[number]


def _class_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    from pimc_jax.data.classes import PASTIS_CLASS_NAMES, SYNTHETIC_CLASS_NAMES

    return {"synthetic": SYNTHETIC_CLASS_NAMES, "pastis": PASTIS_CLASS_NAMES}.get(
        config.data.name, ()
    )


def _parse_pixels(text: str) -> list[tuple[int, int]]:
    """``"R,C;R,C"`` → ``[(R, C), (R, C)]``."""
    pixels = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        parts = item.split(",")
        if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise ValueError(f"--pixels wants ROW,COL;ROW,COL..., got {text!r}")
        pixels.append((int(parts[0]), int(parts[1])))
    if not pixels:
        raise ValueError(f"--pixels names no pixel: {text!r}")
    return pixels


def _results(workdir: Path | None, key: str, what: str) -> dict[str, Any]:
    if workdir is None:
        raise ValueError(f"{what} needs --workdir=DIR (an evaluation's workdir)")
    path = workdir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {what} needs an evaluation's workdir")
    results = _read_json(path)
    if not results.get(key):
        raise ValueError(f"{path} holds no {key!r}: {what} needs a newer evaluation run there")
    return results


def _draw_curves(workdir: Path | None, config_path: str | None) -> Figure:
    if workdir is None:
        raise ValueError("curves needs --workdir=DIR (a pre-training workdir)")
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: curves need a pre-training workdir")
    steps, metrics = read_metrics(path)
    if steps.size == 0:
        raise ValueError(f"{path} holds no logged step yet")
    chance = None
    try:
        batch = run_config(workdir, config_path).get("global_batch_size")
        chance = 1.0 / batch if batch else None
    except (FileNotFoundError, ValueError):
        pass
    return curves_figure(
        steps, metrics, chance=chance, title=f"Pre-training curves ({workdir.resolve().name})"
    )


def _draw_plots(
    workdir: Path | None,
    config_path: str | None,
    patch_number: int,
    pixels: str | None,
    num: int,
) -> Figure:
    config = run_config(workdir, config_path)
    patch = _one_patch(config, patch_number)
    spec = _plot_spec(workdir, config, patch.band_names)
    chosen = _parse_pixels(pixels) if pixels else default_pixels(patch, num)
    for row, col in chosen:
        if not (0 <= row < patch.height and 0 <= col < patch.width):
            raise ValueError(
                f"pixel ({row}, {col}) lies outside the {patch.height}×{patch.width} patch"
            )
    rows, cols = np.asarray(chosen).T
    series = np.swapaxes(patch.reflectance(np.s_[:, rows, cols, :]), 0, 1)
    padded = pad_series(series, patch.dates, int(config.data.max_dates))
    data = pixel_plots(spec, padded["bands"], padded["dates"], padded["mask"], patch.band_names)
    names = _class_names(config)
    titles = []
    for row, col in chosen:
        label = ""
        if patch.labels is not None:
            k = int(patch.labels[row, col])
            label = f", class {k}" + (f" ({names[k]})" if k < len(names) else "")
        titles.append(f"pixel ({row}, {col}) of patch {patch.patch_id!r}{label}")
    kinds = ", ".join(spec.rp_channels)
    return recurrence_figure(
        data,
        titles,
        title=f"Recurrence plots ({spec.rp_size} resampled steps; kinds: {kinds})",
    )


def _draw_embeddings(
    workdir: Path | None, config_path: str | None, patch_number: int, step: int | None
) -> Figure:
    if workdir is None:
        raise ValueError("embeddings needs --workdir=DIR (a pre-training workdir)")
    source = locate_checkpoint(workdir, step) if step is not None else workdir
    params, meta, _ = load_checkpoint(source)
    config = run_config(workdir, config_path)
    patch = _one_patch(config, patch_number)
    encoded = encode_patch(params, patch.reflectance(), patch.dates, patch.band_names)
    return embeddings_figure(
        patch,
        encoded,
        class_names=_class_names(config),
        title=f"Patch {patch.patch_id!r}: dense embeddings (checkpoint of step {meta['step']})",
    )


def _draw_pairs(workdir: Path | None, config_path: str | None, num: int) -> Figure:
    config = run_config(workdir, config_path)
    if config.get("task", "pretrain") != "pretrain":
        raise ValueError(
            f"pairs need a pre-training config, got task {config.task!r}; pass --config=FILE"
        )
    setup = build_pretraining(config)
    batch = setup.sampler.sample_batch(num, step_rng(int(config.seed), 1))
    data = pixel_plots(
        setup.spec, batch["bands"], batch["dates"], batch["mask"], setup.spec.band_names
    )
    return pairs_figure(
        batch,
        data,
        setup.sampler.image_bands,
        title=f"Pre-training pairs (image view: {config.data.image_date})",
    )


def make_figure(
    kind: str,
    *,
    workdir: str | Path | None = None,
    config: str | None = None,
    patch: int = 0,
    pixels: str | None = None,
    num: int | None = None,
    step: int | None = None,
) -> Figure:
    """Figure ``kind`` (module docstring) of a workdir or config, not yet written.

    Args:
      kind: one of :data:`KINDS`.
      workdir: the run's workdir.
      config: ``FILE[:VARIANTS]`` config file standing in for the workdir's config.
      patch: which patch of the run's data (``embeddings``, ``plots``).
      pixels: ``"ROW,COL;ROW,COL"`` (``plots``; default :func:`default_pixels`).
      num: number of pairs (``pairs``, default 6) or of default pixels (``plots``,
        default 3).
      step: checkpoint step (``embeddings``; default the latest intact one).

    Raises:
      FileNotFoundError, ValueError: one line naming what the workdir lacks.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown figure kind {kind!r}; choose one of {KINDS}")
    directory = Path(workdir) if workdir is not None else None
    if directory is not None and not directory.is_dir():
        raise FileNotFoundError(f"no workdir {directory}")
    if num is not None and num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    if kind == "curves":
        figure = _draw_curves(directory, config)
    elif kind == "confusion":
        results = _results(directory, "confusion_matrix", "confusion")
        figure = confusion_figure(
            np.asarray(results["confusion_matrix"]), results.get("class_names", ())
        )
    elif kind == "forecast":
        examples = _results(directory, "forecast_examples", "forecast")["forecast_examples"]
        figure = forecast_figure(
            np.asarray(examples["inputs"]),
            np.asarray(examples["targets"]),
            {m: np.asarray(v) for m, v in examples["predictions"].items()},
            examples["indices"],
        )
    elif kind == "embeddings":
        figure = _draw_embeddings(directory, config, patch, step)
    elif kind == "plots":
        figure = _draw_plots(directory, config, patch, pixels, num or 3)
    else:
        figure = _draw_pairs(directory, config, num or 6)
    return figure


def draw(
    kind: str,
    *,
    workdir: str | Path | None = None,
    out: str | Path | None = None,
    dpi: int = DEFAULT_DPI,
    **options: Any,
) -> Path:
    """Draws figure ``kind`` (:func:`make_figure`, which takes ``options``) as a PNG.

    Args:
      out: the PNG to write; default ``workdir/DEFAULT_FILES[kind]`` (that name in the
        current directory without a workdir).
      dpi: pixels per inch: the PNG is ``figsize × dpi`` pixels.

    Returns:
      The path written.
    """
    figure = make_figure(kind, workdir=workdir, **options)
    if out is None:
        out = Path(workdir or ".") / DEFAULT_FILES[kind]
    return save_figure(figure, out, dpi)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pimc_jax.plot KIND [--workdir=DIR] [--config=FILE] [--out=PNG] ...``.

    Returns:
      The exit status: 0, or 1 after one ``FATAL: ...`` line on stderr.
    """
    parser = argparse.ArgumentParser(
        prog="python -m pimc_jax.plot",
        description="Draws a figure from a pimc_jax workdir (or config) as a PNG.",
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--workdir", help="the run's workdir")
    parser.add_argument("--config", help="FILE[:VARIANTS] instead of the workdir's config")
    parser.add_argument("--out", help="PNG to write (default: WORKDIR/<kind's file>)")
    parser.add_argument("--patch", type=int, default=0, help="patch number (embeddings, plots)")
    parser.add_argument("--pixels", help="ROW,COL;ROW,COL (plots)")
    parser.add_argument(
        "--num", type=int, help="number of pairs (pairs: 6) or default pixels (plots: 3)"
    )
    parser.add_argument("--step", type=int, help="checkpoint step (embeddings)")
    parser.add_argument("--dpi", type=int, default=DEFAULT_DPI)
    args = parser.parse_args(argv)
    try:
        path = draw(
            args.kind,
            workdir=args.workdir,
            config=args.config,
            out=args.out,
            patch=args.patch,
            pixels=args.pixels,
            num=args.num,
            step=args.step,
            dpi=args.dpi,
        )
    except (FileNotFoundError, ValueError) as error:
        sys.stderr.write(user_error_line(error) + "\n")
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
