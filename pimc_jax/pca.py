"""Principal components of embeddings, the one implementation the library uses.

:func:`fit_principal` is the float64 fit (components, explained variance, mean) that both
users share: :func:`principal_components` (scores of ``(..., D)`` embeddings, e.g. an
RGB view of a dense embedding raster in a GIS; :mod:`pimc_jax.data.geotiff`,
:mod:`pimc_jax.maps.preview`) and the figures (:mod:`pimc_jax.figures.arrays`, which
need the float64 components and the explained variance).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Principal:
    """The first principal components of a set of vectors.

    Attributes:
      projections: ``(N, P)`` float64 coordinates of the centred vectors on the components.
      components: ``(P, D)`` float64 unit directions, by decreasing variance; each signed
        so that its largest-magnitude loading is positive.
      explained: ``(P,)`` float64 share of the total variance each component carries.
      mean: ``(D,)`` float64 mean the vectors were centred on (zeros without vectors).
    """

    projections: np.ndarray
    components: np.ndarray
    explained: np.ndarray
    mean: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))


def fit_principal(vectors: np.ndarray, count: int = 3, *, complete: bool = False) -> Principal:
    """PCA of ``(N, D)`` vectors in float64, by NumPy SVD of the centred matrix.

    SVD signs are arbitrary, so each component is signed to make its largest-magnitude
    loading positive and the result does not depend on the SVD's convention. Components
    beyond what the vectors determine (``min(N, D)``; none for ``N < 2``) are zero, or with
    ``complete=True`` (needs ``count <= D``) further orthonormal directions, fitted from
    ``N >= 1`` vectors.
    """
    x = np.asarray(vectors, np.float64)
    if x.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got shape {x.shape}")
    num, dim = x.shape
    mean = x.mean(axis=0) if num else np.zeros(dim)
    centred = x - mean
    components = np.zeros((count, dim))
    explained = np.zeros(count)
    if num >= (1 if complete else 2) and dim >= 1:
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        kept = min(count, vt.shape[0])
        components[:kept] = vt[:kept]
        total = float(np.sum(singular**2))
        if total > 0:
            explained[:kept] = singular[:kept] ** 2 / total
        if complete and kept < count:  # pad with further orthonormal axes
            basis = np.linalg.qr(np.concatenate([vt[:kept], np.eye(dim)], axis=0).T)[0].T
            components = basis[:count].copy()
    largest = components[np.arange(count), np.argmax(np.abs(components), axis=1)]
    components *= np.where(largest < 0, -1.0, 1.0)[:, None]
    return Principal(centred @ components.T, components, explained, mean)


def principal_components(
    embeddings: np.ndarray, k: int = 3, *, valid: np.ndarray | None = None
) -> np.ndarray:
    """The first ``k`` principal components of embeddings, e.g. for an RGB view in a GIS.

    Fitted in float64 (:func:`fit_principal`) on the rows ``valid`` marks (all rows by
    default), centred on their mean. Each component's sign is fixed so that its largest
    loading is positive, so the result does not depend on the SVD's sign convention.

    Args:
      embeddings: ``(..., D)`` float array, e.g. ``(H, W, D)`` from
        :func:`~pimc_jax.encode.encode_patch`.
      k: number of components, ``1 <= k <= D``.
      valid: optional ``(...)`` bool (``embeddings.shape[:-1]``), e.g. ``encode_patch``'s
        ``valid``; rows with False get NaN components and take no part in the fit.

    Returns:
      ``(..., k)`` float32 scores: ``(x − mean) · v_j`` for the top right-singular
      vectors ``v_j`` (in decreasing order of variance).

    Raises:
      ValueError: one line: ``embeddings`` is not a numeric ``(..., D)`` array, ``k`` out
        of range, ``valid`` of the wrong shape, or no valid finite row.
    """
    x = np.asarray(embeddings)
    if x.ndim < 1 or x.dtype.kind not in "iuf" or x.shape[-1] == 0:
        raise ValueError(f"embeddings must be a numeric (..., D) array, got {x.dtype} {x.shape}")
    dims = x.shape[-1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= dims:
        raise ValueError(f"k must be an integer in 1..{dims} (the embedding size), got {k!r}")
    rows = x.reshape(-1, dims).astype(np.float64)
    keep = np.all(np.isfinite(rows), axis=1)
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != x.shape[:-1] or valid.dtype != np.bool_:
            raise ValueError(
                f"valid must be bool with shape {x.shape[:-1]}, got {valid.dtype} {valid.shape}"
            )
        keep &= valid.reshape(-1)
    if not np.any(keep):
        raise ValueError("principal_components: no valid row with finite embeddings to fit on")
    fit = fit_principal(rows[keep], k, complete=True)
    scores = (rows - fit.mean) @ fit.components.T
    scores[~keep] = np.nan
    return scores.astype(np.float32).reshape(*x.shape[:-1], k)
