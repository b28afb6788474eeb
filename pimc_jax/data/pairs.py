"""Pre-training batches of (pixel time series, image crop) pairs: :class:`PairSampler`.

From each chosen patch a few pixels are sampled (:mod:`pimc_jax.data.pixels`) and both
views of every pixel are built (:mod:`pimc_jax.data.views`). Batches follow the
"pixel-series batch" contract: ``bands`` ``(N, T, C)`` float32, ``dates`` ``(N, T)``
float32, ``mask`` ``(N, T)`` bool, ``image`` ``(N, k, k, Ci)`` float32 reflectance (the
model standardises it, :func:`pimc_jax.preprocessing.normalize_crops`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pimc_jax.data.patches import Patch
from pimc_jax.data.pixels import SAMPLING_METHODS, sample_pixels
from pimc_jax.data.views import (
    IMAGE_DATE_METHODS,
    choose_image_dates,
    clear_date_scores,
    crop_indices,
    gather_crops,
    median_composite,
    pad_series,
)
from pimc_jax.indices import band_index, resolve_band_names


class PairSampler:
    """Draws pre-training batches of (pixel time series, image crop) pairs.

    Each batch picks ``ceil(batch_size / pixels_per_patch)`` distinct patches (with
    replacement only when there are fewer patches than that), samples
    ``pixels_per_patch`` pixels in each (:func:`sample_pixels`) and builds both views of
    every pixel; the last patch contributes only the pixels needed to reach
    ``batch_size``.

    Crops stay reflectance (NaN = no-data): the model standardises them
    (:func:`pimc_jax.preprocessing.normalize_crops`, with statistics from
    :func:`pimc_jax.data.statistics.image_statistics`), so training and dense encoding see
    the same input.

    Args:
      patches: the patches; all must hold ``image_bands``.
      pixels_per_patch: pixels drawn per patch.
      crop_size: image-view crop side ``k``.
      image_bands: bands of the image view, by name.
      max_dates: fixed series length ``T`` (see :func:`pad_series`).
      sampling: pixel sampling method, ``"uniform"`` or ``"hilbert"``.
      image_date: ``"random_clear"``, ``"median"`` or ``"fixed_index"`` (date 0); see
        :func:`choose_image_dates`.
      seed: seed of the generator used when :meth:`sample_batch` gets no ``rng``.
    """

    def __init__(
        self,
        patches: Sequence[Patch],
        *,
        pixels_per_patch: int = 16,
        crop_size: int = 32,
        image_bands: Sequence[str] = ("B4", "B3", "B2"),
        max_dates: int,
        sampling: str = "uniform",
        image_date: str = "random_clear",
        seed: int = 0,
    ) -> None:
        if not patches:
            raise ValueError("PairSampler needs at least one patch")
        if pixels_per_patch < 1 or crop_size < 1 or max_dates < 1:
            raise ValueError(
                f"pixels_per_patch, crop_size and max_dates must be >= 1, got "
                f"{pixels_per_patch}, {crop_size}, {max_dates}"
            )
        if sampling not in SAMPLING_METHODS:
            raise ValueError(f"unknown sampling {sampling!r}; choose from {SAMPLING_METHODS}")
        if image_date not in IMAGE_DATE_METHODS:
            raise ValueError(f"unknown image_date {image_date!r}; choose from {IMAGE_DATE_METHODS}")
        self.patches = list(patches)
        self.pixels_per_patch = int(pixels_per_patch)
        self.crop_size = int(crop_size)
        self.image_bands = resolve_band_names(image_bands)
        self.max_dates = int(max_dates)
        self.sampling = sampling
        self.image_date = image_date
        band_names = self.patches[0].band_names
        for patch in self.patches:
            if patch.band_names != band_names:
                raise ValueError(
                    f"patch {patch.patch_id!r} has bands {patch.band_names}, but the first "
                    f"patch has {band_names}; all series of a batch need the same bands"
                )
        self._image_columns = [
            np.asarray([band_index(p.band_names, name) for name in self.image_bands])
            for p in self.patches
        ]
        self._rng = np.random.default_rng(seed)
        self._composites: dict[int, np.ndarray] = {}
        self._scores: dict[int, np.ndarray] = {}

    def _date_scores(self, patch_number: int) -> np.ndarray:
        # dict.setdefault is atomic, so worker threads may share the cache.
        if patch_number not in self._scores:
            self._scores.setdefault(patch_number, clear_date_scores(self.patches[patch_number]))
        return self._scores[patch_number]

    def _composite(self, patch_number: int) -> np.ndarray:
        if patch_number not in self._composites:
            patch = self.patches[patch_number]
            columns = self._image_columns[patch_number]
            composite = median_composite(patch.reflectance(np.s_[..., columns]))
            self._composites.setdefault(patch_number, composite)
        return self._composites[patch_number]

    def _pairs(
        self, rng: np.random.Generator, patch_number: int, num: int
    ) -> dict[str, np.ndarray]:
        patch = self.patches[patch_number]
        pixels = sample_pixels(rng, patch.height, patch.width, num, self.sampling)
        rows, cols = pixels[:, 0], pixels[:, 1]
        series = pad_series(
            np.swapaxes(patch.reflectance(np.s_[:, rows, cols, :]), 0, 1),
            patch.dates,
            self.max_dates,
        )
        crop_rows, crop_cols = crop_indices(pixels, self.crop_size, patch.height, patch.width)
        columns = self._image_columns[patch_number]
        if self.image_date == "median":
            crops = self._composite(patch_number)[crop_rows, crop_cols]
        else:
            date = choose_image_dates(
                rng, patch, num, self.image_date, scores=self._date_scores(patch_number)
            )
            crops = gather_crops(patch.bands, date, crop_rows, crop_cols, columns)
            if patch.reflectance_scale != 1.0 or crops.dtype != np.float32:
                crops = crops.astype(np.float32) / np.float32(patch.reflectance_scale)
        series["image"] = np.asarray(crops, dtype=np.float32)
        return series

    def sample_batch(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> dict[str, np.ndarray]:
        """Draws one batch of ``batch_size`` pairs.

        Args:
          batch_size: number of pairs ``N``.
          rng: generator to draw from; the sampler's own seeded generator when None.

        Returns:
          dict with ``bands`` ``(N, T, C)`` float32 (NaN on no-data and padding),
          ``dates`` ``(N, T)`` float32 days since 1970-01-01, ``mask`` ``(N, T)`` bool,
          ``image`` ``(N, k, k, Ci)`` float32 reflectance crops (NaN = no-data);
          ``T = max_dates``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rng = self._rng if rng is None else rng
        num_patches = -(-batch_size // self.pixels_per_patch)
        chosen = rng.choice(
            len(self.patches), size=num_patches, replace=num_patches > len(self.patches)
        )
        counts = [self.pixels_per_patch] * num_patches
        counts[-1] = batch_size - self.pixels_per_patch * (num_patches - 1)
        parts = [self._pairs(rng, int(p), n) for p, n in zip(chosen, counts, strict=True)]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
