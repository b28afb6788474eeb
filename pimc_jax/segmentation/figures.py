"""The figure of a segmentation evaluation: test chips, their labels and the predictions.

One row per chip: Sentinel-2 true colour (B4, B3, B2, stretched to the 2-98 % range),
Sentinel-1 VV (dB), the label (water blue, not water white, no data grey) and the
prediction on the label's valid pixels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLES_FILE = "flood_examples.png"


def _true_colour(s2: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    names = list(band_names)
    picks = [names.index(b) for b in ("B4", "B3", "B2") if b in names]
    rgb = s2[..., picks] if len(picks) == 3 else np.repeat(s2[..., :1], 3, axis=-1)
    finite = rgb[np.isfinite(rgb)]
    low, high = np.percentile(finite, (2, 98)) if finite.size else (0.0, 1.0)
    return np.clip(np.nan_to_num((rgb - low) / max(high - low, 1e-6)), 0.0, 1.0)


def _classes(labels: np.ndarray) -> np.ndarray:
    colours = np.asarray([[0.6, 0.6, 0.6], [1.0, 1.0, 1.0], [0.1, 0.3, 0.9]])
    return colours[np.clip(labels.astype(int) + 1, 0, 2)]


def flood_examples_figure(examples: Sequence[Mapping[str, Any]]):
    """A matplotlib figure of ``examples`` (chip_id, s2, s2_band_names, s1, labels,
    prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(examples)
    fig, axes = plt.subplots(rows, 4, figsize=(9, 2.3 * rows), squeeze=False)
    for row, example in zip(axes, examples, strict=True):
        labels = np.asarray(example["labels"])
        prediction = np.where(labels < 0, -1, np.asarray(example["prediction"]))
        panels = (
            (_true_colour(np.asarray(example["s2"]), example["s2_band_names"]), "S2 B4-B3-B2"),
            (np.asarray(example["s1"])[..., 0], "S1 VV (dB)"),
            (_classes(labels), "label"),
            (_classes(prediction), "prediction"),
        )
        for axis, (image, title) in zip(row, panels, strict=True):
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
            axis.set_title(f"{example['chip_id']}: {title}" if title == "S2 B4-B3-B2" else title,
                           fontsize=8)  # fmt: skip
            axis.set_xticks([])
            axis.set_yticks([])
    fig.tight_layout()
    return fig


def write_flood_examples(
    directory: str | os.PathLike, examples: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    """Draws :func:`flood_examples_figure` into ``directory``; ``{"flood_examples": file}``
    (empty without examples)."""
    if not examples:
        return {}
    import matplotlib.pyplot as plt

    fig = flood_examples_figure(examples)
    Path(directory).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(directory) / EXAMPLES_FILE, dpi=110)
    plt.close(fig)
    return {"flood_examples": EXAMPLES_FILE}
