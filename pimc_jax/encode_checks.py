"""Consistency checks of an :func:`pimc_jax.encode` batch, beyond each array's own shape.

The series dates follow the loaders' rules (strictly increasing at the real
acquisitions, whole days: :func:`pimc_jax.data.user.dates_to_days`), every view's input
has one row per pixel, crops have the model's size, and all-gap crops are flagged (the
image towers' ``valid``). Errors are one ``ValueError`` line naming the key and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def check_rows(batch: Mapping[str, Any], keys: Iterable[str]) -> None:
    """Refuses view inputs (``keys`` present in ``batch``) with different row counts."""
    rows = {key: np.shape(batch[key])[0] for key in keys if key in batch and np.ndim(batch[key])}
    if len(set(rows.values())) > 1:
        listed = ", ".join(f"{key} has {count}" for key, count in rows.items())
        raise ValueError(
            f"batch views have different numbers of rows ({listed}); every view needs one "
            "row per pixel, in the same order"
        )


def check_increasing_dates(dates: np.ndarray, mask: np.ndarray, name: str) -> None:
    """Refuses ``(N, T)`` dates that do not strictly increase over the real acquisitions
    (``mask`` True, finite date) of each row: unsorted or repeated dates, which the loaders
    refuse too (a gap's date is not compared)."""
    real = mask & np.isfinite(dates)
    if dates.size == 0 or real.sum(axis=1).max(initial=0) < 2:
        return
    marked = np.where(real, dates.astype(np.float64), -np.inf)
    before = np.maximum.accumulate(marked, axis=1)
    before = np.concatenate([np.full((dates.shape[0], 1), -np.inf), before[:, :-1]], axis=1)
    bad = real & (marked <= before)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must strictly increase along T at the real acquisitions; row {row} has "
            f"{dates[row, column]:g} at position {column} after a date >= it (sort the dates, "
            "with their values, and drop repeated ones)"
        )


def check_crop_size(image: np.ndarray, size: int, name: str) -> None:
    """Refuses ``(N, k, k, C)`` crops whose ``k × k`` is not the model's ``size × size``."""
    if image.shape[1:3] != (size, size):
        raise ValueError(
            f"{name} crops are {image.shape[1]}x{image.shape[2]}; this model was trained on "
            f"{size}x{size} crops centred on the pixel (cut them to that size)"
        )


def crops_valid(image: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: True where a crop holds at least one finite value (not all gaps)."""
    if image.shape[0] == 0:
        return np.zeros((0,), bool)
    return np.isfinite(image).reshape(image.shape[0], -1).any(axis=1)
