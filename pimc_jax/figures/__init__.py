"""Figures of a pre-training run as a library: arrays in, matplotlib figures out.

:mod:`~pimc_jax.figures.arrays` computes what is drawn (metrics, PCA colours, true
colours, pixels' series and plots); :mod:`~pimc_jax.figures.drawing` draws it. The
command ``python -m pimc_jax.plot`` (:mod:`pimc_jax.plot`) reads a workdir and calls
these; the evaluations' own figures are :mod:`pimc_jax.evaluation.figures`.
"""

from pimc_jax.figures.arrays import (
    TRUE_COLOUR_BANDS,
    PixelPlots,
    Principal,
    clear_dates,
    default_pixels,
    pca_rgb,
    pixel_plots,
    principal_components,
    read_metrics,
    robust_unit_scale,
    true_colour,
)
from pimc_jax.figures.drawing import (
    curves_figure,
    embeddings_figure,
    pairs_figure,
    recurrence_figure,
)

__all__ = [
    "TRUE_COLOUR_BANDS",
    "PixelPlots",
    "Principal",
    "clear_dates",
    "curves_figure",
    "default_pixels",
    "embeddings_figure",
    "pairs_figure",
    "pca_rgb",
    "pixel_plots",
    "principal_components",
    "read_metrics",
    "recurrence_figure",
    "robust_unit_scale",
    "true_colour",
]
