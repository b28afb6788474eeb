"""Figures of evaluation results, drawn with matplotlib's Agg renderer (no display needed).

:func:`write_figures` draws, into an evaluation's workdir beside ``results.md``, every
figure the results hold data for, and returns the ``figures`` entry that
:func:`~pimc_jax.evaluation.results.results_markdown` links:

* ``confusion_matrix`` + ``class_names`` (the classification tasks) → ``confusion.png``
  (:func:`confusion_figure`): the test-split confusion matrix beside per-class F1;
* ``forecast_examples`` (forecasting) → ``forecast_examples.png``
  (:func:`forecast_figure`): a few test windows, their targets and every model's forecast.

Figures are :class:`matplotlib.figure.Figure` objects with an Agg canvas, built without
``pyplot`` (no global state, safe in any thread); :func:`save_figure` writes them at a
fixed size (``figsize × dpi`` pixels, no cropping). matplotlib is imported on first use,
so importing this module stays cheap. :mod:`pimc_jax.plot` draws the other figures and
reuses these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from absl import logging

from pimc_jax.evaluation.scores import classification_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# File names of the figures an evaluation writes, by results key.
CONFUSION_FILE = "confusion.png"
FORECAST_FILE = "forecast_examples.png"
DEFAULT_DPI = 100


def new_figure(width: float, height: float) -> Figure:
    """A blank ``width × height``-inch figure with an Agg canvas and constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = DEFAULT_DPI) -> Path:
    """Writes ``figure`` as a PNG of exactly ``figsize × dpi`` pixels; returns the path.

    The parent directory is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, format="png", facecolor="white")
    return path


def _present_classes(confusion: np.ndarray) -> np.ndarray:
    """Classes that occur in the labels or the predictions (those macro-F1 counts)."""
    return np.flatnonzero((confusion.sum(axis=1) > 0) | (confusion.sum(axis=0) > 0))


def confusion_figure(
    confusion: np.ndarray, class_names: Sequence[str], *, title: str = ""
) -> Figure:
    """The confusion matrix (counts, coloured by row share) beside per-class F1 bars.

    Only the classes that occur in the labels or the predictions are drawn (the classes
    :func:`~pimc_jax.evaluation.scores.classification_metrics` scores). Cell ``(i, j)``
    holds the count of class-``i`` samples predicted as ``j`` and is coloured by that
    count's share of row ``i`` (the recall on the diagonal), so rare classes stay
    readable; the bars show each class's F1 with the macro-F1 as a dashed line.

    Args:
      confusion: ``(K, K)`` integer counts, row = true class, column = predicted class.
      class_names: names of classes ``0..K-1`` (missing names become the class number).
      title: the figure's title; default names accuracy and macro-F1.

    Returns:
      The figure: ``axes[0]`` the matrix (its image holds the row shares, its texts the
      counts), ``axes[1]`` the bars, ``axes[2]`` the colourbar.
    """
    confusion = np.asarray(confusion, np.int64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be square (K, K), got {confusion.shape}")
    names = list(class_names) + [str(k) for k in range(len(class_names), confusion.shape[0])]
    present = _present_classes(confusion)
    if present.size == 0:
        raise ValueError("the confusion matrix holds no sample")
    shown = confusion[np.ix_(present, present)]
    labels = [f"{k}: {names[k]}" for k in present]
    scores = classification_metrics(confusion, names)
    f1 = np.asarray([row["f1"] for row in scores["per_class"]])
    support = np.asarray([row["support"] for row in scores["per_class"]])
    with np.errstate(invalid="ignore", divide="ignore"):
        share = shown / np.maximum(shown.sum(axis=1, keepdims=True), 1)

    size = len(present)
    cell = 0.55 if size <= 12 else 0.38
    side = max(3.5, 1.6 + cell * size)
    figure = new_figure(side + 4.5, side + 1.0)
    grid = figure.add_gridspec(1, 2, width_ratios=(side, 3.6))
    matrix_axes = figure.add_subplot(grid[0])
    bar_axes = figure.add_subplot(grid[1])
    image = matrix_axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    font = 8 if size <= 12 else 6
    for i in range(size):
        for j in range(size):
            matrix_axes.text(
                j,
                i,
                str(int(shown[i, j])),
                ha="center",
                va="center",
                fontsize=font,
                color="white" if share[i, j] > 0.6 else "black",
            )
    matrix_axes.set_xticks(range(size), labels, rotation=60, ha="right", fontsize=font)
    matrix_axes.set_yticks(range(size), labels, fontsize=font)
    matrix_axes.set_xlabel("predicted class")
    matrix_axes.set_ylabel("true class")
    matrix_axes.set_title("counts (colour: share of the true class)", fontsize=9)
    figure.colorbar(image, ax=matrix_axes, shrink=0.8, label="share of row")

    rows = np.arange(size)
    bar_axes.barh(rows, f1, color="tab:blue")
    for row, value in zip(rows, f1, strict=True):
        inside = value > 0.84  # no room right of the bar: white text on it
        bar_axes.text(
            value - 0.02 if inside else value + 0.02,
            row,
            f"{value:.2f}",
            va="center",
            ha="right" if inside else "left",
            color="white" if inside else "black",
            fontsize=font,
        )
    bar_axes.axvline(scores["macro_f1"], color="black", linestyle="--", linewidth=1)
    bar_axes.set_yticks(rows, [f"{name} (n={n})" for name, n in zip(labels, support, strict=True)])
    bar_axes.tick_params(axis="y", labelsize=font)
    bar_axes.invert_yaxis()  # same order as the matrix rows
    bar_axes.set_xlim(0.0, 1.0)
    bar_axes.set_xlabel("F1")
    bar_axes.set_title(f"per-class F1 (dashed: macro-F1 {scores['macro_f1']:.3f})", fontsize=9)
    figure.suptitle(
        title
        or (
            f"Test split: {int(confusion.sum())} samples, overall accuracy "
            f"{scores['overall_accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f}"
        ),
        fontsize=10,
    )
    return figure


# Line colours of the forecast models, by name; other models take the next colour.
_MODEL_COLOURS = {
    "pimc": "tab:red",
    "ridge_1d": "tab:blue",
    "cnn_1d": "tab:green",
    "zero": "tab:grey",
}


def forecast_figure(
    inputs: np.ndarray,
    targets: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    index_names: Sequence[str],
    *,
    title: str = "",
) -> Figure:
    """Forecast examples: one row per window, one column per index.

    Each panel shows the ``L`` input observations, the ``H`` target observations after
    them, and every model's ``H`` predicted values, all on the z-scored scale the
    forecasting evaluation scores (x: the window's valid-observation number).

    Args:
      inputs: ``(E, L, K)`` float z-scored input series of ``E`` windows.
      targets: ``(E, H, K)`` float z-scored targets.
      predictions: model name → ``(E, H, K)`` predicted values.
      index_names: the ``K`` index names.
      title: the figure's title.

    Returns:
      The figure; panel ``(e, k)`` is ``figure.axes[e * K + k]``, its first line the
      input, its second the target, then one line per model in ``predictions`` order.
    """
    inputs = np.asarray(inputs, np.float64)
    targets = np.asarray(targets, np.float64)
    if inputs.ndim != 3 or targets.ndim != 3 or inputs.shape[::2] != targets.shape[::2]:
        raise ValueError(
            f"inputs (E, L, K) and targets (E, H, K) differ: {inputs.shape}, {targets.shape}"
        )
    num, length, num_indices = inputs.shape
    horizon = targets.shape[1]
    if len(index_names) != num_indices:
        raise ValueError(f"{num_indices} indices but {len(index_names)} names")
    if num == 0:
        raise ValueError("no forecast example to draw")
    for model, values in predictions.items():
        if np.shape(values) != targets.shape:
            raise ValueError(f"predictions of {model!r} {np.shape(values)} != {targets.shape}")
    figure = new_figure(3.4 * num_indices + 0.6, 2.2 * num + 0.9)
    axes = figure.subplots(num, num_indices, squeeze=False, sharex=True)
    past = np.arange(length)
    future = np.arange(length, length + horizon)
    for e in range(num):
        for k in range(num_indices):
            ax = axes[e, k]
            ax.plot(past, inputs[e, :, k], color="black", linewidth=1.2, label="input")
            ax.plot(
                future,
                targets[e, :, k],
                color="black",
                linestyle="--",
                marker="o",
                markersize=3,
                linewidth=1.2,
                label="target",
            )
            for model, values in predictions.items():
                ax.plot(
                    future,
                    np.asarray(values)[e, :, k],
                    color=_MODEL_COLOURS.get(model),
                    marker=".",
                    linewidth=1.2,
                    label=model,
                )
            ax.axvline(length - 0.5, color="grey", linewidth=0.8, linestyle=":")
            ax.grid(alpha=0.3)
            if e == 0:
                ax.set_title(index_names[k].upper())
            if k == 0:
                ax.set_ylabel(f"window {e}\nz-score")
            if e == num - 1:
                ax.set_xlabel("valid observation")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    figure.suptitle(title or "Forecast examples (test split, z-scored)", fontsize=10)
    return figure


def write_figures(
    workdir: str | os.PathLike, results: Mapping[str, Any], dpi: int = DEFAULT_DPI
) -> dict[str, str]:
    """Draws the figures ``results`` holds data for into ``workdir`` (module docstring).

    A figure that fails to draw is left out with a warning: it never costs the results.

    Returns:
      ``{figure name: file name relative to workdir}``, the ``figures`` entry of the
      results that ``results.md`` links.
    """
    drawn: dict[str, str] = {}
    jobs = []
    if results.get("confusion_matrix") is not None:
        jobs.append(
            (
                "confusion",
                CONFUSION_FILE,
                lambda: confusion_figure(
                    np.asarray(results["confusion_matrix"]), results.get("class_names", ())
                ),
            )
        )
    if results.get("forecast_examples"):
        examples = results["forecast_examples"]
        jobs.append(
            (
                "forecast_examples",
                FORECAST_FILE,
                lambda: forecast_figure(
                    np.asarray(examples["inputs"]),
                    np.asarray(examples["targets"]),
                    {m: np.asarray(v) for m, v in examples["predictions"].items()},
                    examples["indices"],
                ),
            )
        )
    for name, file_name, draw in jobs:
        try:
            save_figure(draw(), Path(workdir) / file_name, dpi)
        except (ValueError, KeyError, TypeError, OSError, ImportError) as error:
            logging.warning("Figure %s not drawn: %s", file_name, error)
            continue
        drawn[name] = file_name
    return drawn
