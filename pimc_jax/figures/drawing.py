"""Matplotlib figures of a pre-training run, built from arrays: training curves, dense
embeddings as PCA colours, recurrence plots beside their index series, pre-training pairs.

Each builder takes arrays (:mod:`pimc_jax.figures.arrays`) and returns a figure drawn with
the Agg renderer (no display); the evaluations' figures (confusion matrix, forecasts) are
:mod:`pimc_jax.evaluation.figures`, whose ``new_figure`` these share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pimc_jax import indices as indices_lib
from pimc_jax.data.patches import Patch
from pimc_jax.evaluation.figures import new_figure
from pimc_jax.figures.arrays import (
    TRUE_COLOUR_BANDS,
    PixelPlots,
    pca_rgb,
    stretch,
    true_colour,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Plot kinds' colour maps: distances are non-negative, differences signed, levels any value.
_PLOT_COLOURMAPS = {"distance": "magma", "difference": "RdBu_r", "level": "viridis"}
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
    rgb = stretch(crops[..., channels])
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
