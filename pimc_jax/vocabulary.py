"""The words every layer shares: the views a tower can read, the batch keys behind each,
and the small checks on them, at the bottom of the package so that the model and the step
need nothing from :mod:`pimc_jax.data` to speak of views.
"""

from __future__ import annotations

from typing import Any

import numpy as np

VIEWS: tuple[str, ...] = ("s2_rp", "s2_image", "s1_rp", "s1_image", "s2_image_aug")
PLOT_VIEWS: tuple[str, ...] = ("s2_rp", "s1_rp")
IMAGE_VIEWS: tuple[str, ...] = ("s2_image", "s1_image", "s2_image_aug")
# The Sentinel-2 crop, and the same crop under SimCLR-style augmentation while pre-training
# (pimc_jax.augment.strong_augment; the augmentation-only baseline pairing
# ("s2_image_aug", "s2_image")). Both read the same inputs and are encoded alike.
S2_IMAGE_VIEWS: tuple[str, ...] = ("s2_image", "s2_image_aug")
AUGMENTED_VIEWS: tuple[str, ...] = ("s2_image_aug",)
S1_VIEWS: tuple[str, ...] = ("s1_rp", "s1_image")
# The batch keys each view's model input is built from (pimc_jax.data.pairs.PairSampler).
VIEW_KEYS: dict[str, tuple[str, ...]] = {
    "s2_rp": ("bands", "dates", "mask"),
    "s2_image": ("image",),
    "s1_rp": ("s1_bands", "s1_dates", "s1_mask"),
    "s1_image": ("s1_image",),
    "s2_image_aug": ("image",),
}


def check_views(views: object, key: str = "model.views") -> tuple[str, str]:
    """``views`` as a tuple of two distinct names of :data:`VIEWS`; else a one-line error.

    Args:
      views: the configured value (a sequence of two names).
      key: the config key named in the error.
    """
    if isinstance(views, str) or not hasattr(views, "__len__") or len(views) != 2:
        raise ValueError(f"{key} must be two view names from {VIEWS}, got {views!r}")
    names = tuple(str(view) for view in views)
    unknown = [view for view in names if view not in VIEWS]
    if unknown:
        raise ValueError(f"{key}={names!r}: unknown view(s) {unknown}; choose from {VIEWS}")
    if names[0] == names[1]:
        raise ValueError(f"{key}={names!r}: the two towers need two different views")
    return names[0], names[1]


def check_multilook(window: Any) -> int:
    """The ``data.s1_multilook`` window: an odd int >= 1 (1 = each pixel on its own)."""
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"data.s1_multilook must be an odd int >= 1, got {window!r}")
    if window % 2 == 0:
        raise ValueError(f"data.s1_multilook must be odd (centred on the pixel), got {window}")
    return int(window)


def pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """Pads axis 0 to ``rows`` by repeating the last row (padding stays valid model input),
    so that batches of nearby sizes share one compiled shape."""
    if array.shape[0] == rows:
        return array
    return np.concatenate([array, np.repeat(array[-1:], rows - array.shape[0], axis=0)], axis=0)
