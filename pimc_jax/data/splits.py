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
