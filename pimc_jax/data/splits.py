"""Seeded stratified splits, shared by the EuroSAT builder and the evaluations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Seeded stratified split of ``range(N)`` into ``len(fractions) + 1`` parts.

    Within each class (in label order) the rows are permuted by one
    ``numpy.random.default_rng(seed)`` generator shared across classes; part
    ``i < len(fractions)`` takes the next ``round(fractions[i] · count)`` rows, the last
    part the rest.

    Args:
      labels: ``(N,)`` class of each row.
      fractions: the share of each class in every part but the last.
      seed: seed of the generator.

    Returns:
      sorted row indices (int64) of each part.
    """
    labels = np.asarray(labels)
    if any(f < 0 for f in fractions) or sum(fractions) > 1:
        raise ValueError(f"split fractions must be >= 0 and sum to <= 1, got {tuple(fractions)}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        start = 0
        for part, fraction in enumerate(fractions):
            size = int(round(fraction * rows.size))
            parts[part].append(rows[start : start + size])
            start += size
        parts[-1].append(rows[start:])
    return [np.sort(np.concatenate(p)) if p else np.zeros((0,), np.int64) for p in parts]


def stratified_folds(labels: np.ndarray, num_folds: int, seed: int) -> list[np.ndarray]:
    """Seeded stratified k-fold: ``range(N)`` dealt into ``num_folds`` disjoint folds.

    Within each class (in label order) the rows are permuted by one
    ``numpy.random.default_rng(seed)`` generator shared across classes and dealt round
    robin, continuing from the fold where the previous class stopped, so every fold gets
    ``⌊n_k / F⌋`` or ``⌈n_k / F⌉`` rows of class ``k`` and the fold sizes differ by at most
    one. A class with fewer than ``num_folds`` rows is missing from some folds.

    Args:
      labels: ``(N,)`` class of each row.
      num_folds: ``F >= 2``.
      seed: seed of the generator.

    Returns:
      ``F`` sorted int64 index arrays whose union is ``range(N)``.
    """
    labels = np.asarray(labels)
    if isinstance(num_folds, bool) or not isinstance(num_folds, int | np.integer) or num_folds < 2:
        raise ValueError(f"num_folds must be an int >= 2, got {num_folds!r}")
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(labels.shape[0], np.int64)
    offset = 0
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        fold_of[rows] = (offset + np.arange(rows.size)) % num_folds
        offset = (offset + rows.size) % num_folds
    return [np.flatnonzero(fold_of == fold) for fold in range(num_folds)]


def subset_rows(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """``rows`` (indices or a mask) of every ``(N, ...)`` array of ``arrays``."""
    return {key: value[rows] for key, value in arrays.items()}
