"""Pictures of map outputs: PCA previews of embeddings, class colours and the class-map figure.

:func:`pca_preview` turns ``(H, W, D)`` embeddings into an RGB PNG (first three principal
components, each stretched between its 2nd and 98th percentile; invalid pixels black).
:func:`class_colours` gives each class a colour by its rank (so real codes such as 1200 and
5100 never share one); :func:`class_map_figure` draws class maps with a legend of names.
Every file is written under a temporary name and renamed (:func:`pimc_jax.maps.cog.atomic_write`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pimc_jax.encode import principal_components
from pimc_jax.maps.cog import atomic_write

# A qualitative palette (tab20's colours), used in class rank order, then cycled darker.
_PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (199, 199, 199),
    (219, 219, 141),
    (158, 218, 229),
)


def class_colours(num_classes: int) -> list[tuple[int, int, int, int]]:
    """``num_classes`` RGBA colours, one per class rank (distinct for the first 20)."""
    colours = []
    for rank in range(num_classes):
        r, g, b = _PALETTE[rank % len(_PALETTE)]
        shade = 0.6 ** (rank // len(_PALETTE))
        colours.append((int(r * shade), int(g * shade), int(b * shade), 255))
    return colours


def _save_png(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    with atomic_write(path) as temporary:
        Image.fromarray(rgb, mode="RGB").save(temporary, format="PNG")
    return Path(path)


def pca_rgb(embeddings: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8: the first three principal components, percentile-stretched."""
    x = np.asarray(embeddings, np.float32)
    keep = np.all(np.isfinite(x), axis=-1)
    if valid is not None:
        keep &= np.asarray(valid, bool)
    rgb = np.zeros((*x.shape[:2], 3), np.uint8)
    if not np.any(keep):
        return rgb
    k = min(3, x.shape[-1])
    scores = principal_components(np.where(keep[..., None], x, 0.0), k, valid=keep)
    for channel in range(k):
        values = scores[..., channel][keep]
        low, high = np.percentile(values, [2, 98])
        scaled = (scores[..., channel] - low) / max(high - low, 1e-12)
        rgb[..., channel] = np.where(keep, np.clip(scaled, 0, 1) * 255, 0).astype(np.uint8)
    return rgb


def pca_preview(
    path: str | os.PathLike[str], embeddings: np.ndarray, valid: np.ndarray | None = None
) -> Path:
    """Writes :func:`pca_rgb` of ``embeddings`` ``(H, W, D)`` as a PNG; rasters under 256
    pixels on their longer side are enlarged by a whole factor (each pixel a square)."""
    rgb = pca_rgb(embeddings, valid)
    factor = max(1, 256 // max(rgb.shape[:2] or (1,)))
    return _save_png(path, np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1))


def class_map_figure(
    path: str | os.PathLike[str],
    maps: Sequence[tuple[str, np.ndarray]],
    class_names: Sequence[str],
    *,
    max_panels: int = 6,
) -> Path:
    """Draws up to ``max_panels`` class maps (``(title, (H, W) class rank or -1)``) side by
    side with one legend naming the classes; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch as LegendPatch

    maps = list(maps)[:max_panels]
    colours = np.asarray(class_colours(len(class_names)), np.float64) / 255.0
    cmap = ListedColormap(colours if len(colours) else [(0, 0, 0, 1)])
    cmap = cmap.with_extremes(bad=(0, 0, 0, 0))
    panels = max(len(maps), 1)
    figure, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.4), squeeze=False)
    for axis, (title, ranks) in zip(axes[0], maps, strict=False):
        shown = np.ma.masked_less(np.asarray(ranks), 0)
        axis.imshow(
            shown, cmap=cmap, vmin=-0.5, vmax=len(class_names) - 0.5, interpolation="nearest"
        )
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    handles = [
        LegendPatch(facecolor=colours[rank], label=name) for rank, name in enumerate(class_names)
    ]
    figure.tight_layout()
    figure.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False
    )
    with atomic_write(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return Path(path)
