"""Pre-training batches of view pairs of pixels: :class:`PairSampler`.

From each chosen patch a few pixels are sampled (:mod:`pimc_jax.data.pixels`) and the two
views of every pixel are built (:mod:`pimc_jax.data.views`). Batches follow the
"pixel-series batch" contract, with the keys the views need (:data:`VIEW_KEYS`):
``s2_rp``: ``bands`` ``(N, T, C)`` float32, ``dates`` ``(N, T)`` float32, ``mask``
``(N, T)`` bool; ``s2_image``: ``image`` ``(N, k, k, Ci)`` float32 reflectance (the model
standardises it, :func:`pimc_jax.preprocessing.normalize_crops`); ``s1_rp``: ``s1_bands``
``(N, T, C1)`` float32 dB, ``s1_dates``, ``s1_mask``; ``s1_image``: ``s1_image``
``(N, k, k, C2)`` float32 dB.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from absl import logging

from pimc_jax.data.patches import Patch
from pimc_jax.data.pixels import SAMPLING_METHODS, sample_pixels
from pimc_jax.data.radar import check_multilook, pixel_s1_series, s1_channel_columns
from pimc_jax.data.views import (
    IMAGE_DATE_METHODS,
    MEDIAN_COMPOSITE,
    S1_VIEWS,
    S2_IMAGE_VIEWS,
    VIEW_KEYS,
    check_views,
    choose_image_dates,
    clear_date_scores,
    crop_indices,
    gather_crops,
    median_composite,
    pad_series,
    s1_image_dates,
    s2_image_days,
)
from pimc_jax.indices import band_index, canonical_radar_band_name, resolve_band_names


class PairSampler:
    """Draws pre-training batches of view pairs (by default pixel series and image crop).

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
      views: the two views to build (:data:`pimc_jax.data.views.VIEWS`). Views reading
        Sentinel-1 leave out the patches without S1 (counted in :attr:`num_without_s1`)
        and, for ``s1_image``, the S2 image dates without an S1 date within
        ``s1_max_gap_days`` (a patch left with none is dropped, counted in
        :attr:`num_beyond_gap`).
      s1_image_bands: channels of the ``s1_image`` crops, by name.
      s1_max_gap_days: largest ``|S1 day − S2 image day|`` of an ``s1_image`` pair.
      s1_multilook: odd window of the ``s1_rp`` series' multilook
        (:func:`~pimc_jax.data.radar.pixel_s1_series`); 1 = the pixel alone.
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
        views: Sequence[str] = ("s2_rp", "s2_image"),
        s1_image_bands: Sequence[str] = ("VV", "VH", "VV/VH"),
        s1_max_gap_days: float | None = 6.0,
        s1_multilook: int = 1,
    ) -> None:
        if not patches:
            raise ValueError("PairSampler needs at least one patch")
        self.views = check_views(views, "views")
        if pixels_per_patch < 1 or crop_size < 1 or max_dates < 1:
            raise ValueError(
                f"pixels_per_patch, crop_size and max_dates must be >= 1, got "
                f"{pixels_per_patch}, {crop_size}, {max_dates}"
            )
        if sampling not in SAMPLING_METHODS:
            raise ValueError(f"unknown sampling {sampling!r}; choose from {SAMPLING_METHODS}")
        if image_date not in IMAGE_DATE_METHODS:
            raise ValueError(f"unknown image_date {image_date!r}; choose from {IMAGE_DATE_METHODS}")
        self.s1_max_gap_days = s1_max_gap_days
        self.s1_multilook = check_multilook(s1_multilook)
        self.num_without_s1 = 0
        self.num_beyond_gap = 0
        # Allowed S2 image dates per patch (s1_image: those with an S1 date within the gap).
        self._allowed: list[np.ndarray] | None = None
        patches = list(patches)
        if any(view in S1_VIEWS for view in self.views):
            patches = self._s1_patches(patches, image_date)
        self.patches = patches
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
        self.s1_band_names: tuple[str, ...] = ()
        self.s1_image_bands: tuple[str, ...] = ()
        if any(view in S1_VIEWS for view in self.views):
            self.s1_band_names = tuple(self.patches[0].s1_band_names)
            for patch in self.patches:
                if tuple(patch.s1_band_names) != self.s1_band_names:
                    raise ValueError(
                        f"patch {patch.patch_id!r} has S1 bands {patch.s1_band_names}, but the "
                        f"first has {self.s1_band_names}; all S1 series need the same bands"
                    )
        if "s1_image" in self.views:
            self.s1_image_bands = tuple(canonical_radar_band_name(n) for n in s1_image_bands)
            self._s1_columns = s1_channel_columns(
                self.s1_band_names, s1_image_bands, "data.s1_image_bands"
            )
        self._rng = np.random.default_rng(seed)
        self._composites: dict[int, np.ndarray] = {}
        self._scores: dict[int, np.ndarray] = {}

    def _s1_patches(self, patches: list[Patch], image_date: str) -> list[Patch]:
        """The patches S1 views can use; the others are counted and logged."""
        kept = [patch for patch in patches if patch.has_s1]
        self.num_without_s1 = len(patches) - len(kept)
        if self.num_without_s1:
            logging.warning(
                "%d of %d patches have no Sentinel-1 series; they are left out of the views %s",
                self.num_without_s1,
                len(patches),
                self.views,
            )
        if "s1_image" in self.views:
            usable, allowed = [], []
            for patch in kept:
                if image_date == "random_clear":
                    days = np.asarray(patch.dates, np.int64)
                else:  # one date per patch: the median composite's day, or date 0
                    index = MEDIAN_COMPOSITE if image_date == "median" else 0
                    days = s2_image_days(patch, np.asarray([index]))
                ok = s1_image_dates(patch, days, self.s1_max_gap_days) >= 0
                if ok.any():
                    usable.append(patch)
                    allowed.append(ok if image_date == "random_clear" else np.ones(1, bool))
            self.num_beyond_gap = len(kept) - len(usable)
            if self.num_beyond_gap:
                logging.warning(
                    "%d patches have no Sentinel-1 date within data.s1_max_gap_days=%s of "
                    "their Sentinel-2 image date; they are left out of the s1_image view",
                    self.num_beyond_gap,
                    self.s1_max_gap_days,
                )
            kept, self._allowed = usable, allowed
        if not kept:
            raise ValueError(
                f"model.views={self.views!r}: none of the {len(patches)} patches has a usable "
                f"Sentinel-1 series ({self.num_without_s1} without S1, {self.num_beyond_gap} "
                f"beyond data.s1_max_gap_days={self.s1_max_gap_days})"
            )
        return kept

    def _date_scores(self, patch_number: int) -> np.ndarray:
        # dict.setdefault is atomic, so worker threads may share the cache.
        if patch_number not in self._scores:
            scores = clear_date_scores(self.patches[patch_number])
            if self._allowed is not None:  # s1_image: never a date without S1 near it
                scores = np.where(self._allowed[patch_number], scores, np.inf)
            self._scores.setdefault(patch_number, scores)
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
        out: dict[str, np.ndarray] = {}
        if "s2_rp" in self.views:
            out.update(
                pad_series(
                    np.swapaxes(patch.reflectance(np.s_[:, rows, cols, :]), 0, 1),
                    patch.dates,
                    self.max_dates,
                )
            )
        if "s1_rp" in self.views:
            series = pixel_s1_series(
                patch.s1_bands, rows, cols, patch.s1_band_names, self.s1_multilook
            )
            s1 = pad_series(series, patch.s1_dates, self.max_dates)
            out.update({f"s1_{key}": value for key, value in s1.items()})
        s2_image = any(view in S2_IMAGE_VIEWS for view in self.views)
        if not s2_image and "s1_image" not in self.views:
            return out
        crop_rows, crop_cols = crop_indices(pixels, self.crop_size, patch.height, patch.width)
        columns = self._image_columns[patch_number]
        if self.image_date == "median":
            date = np.full(num, MEDIAN_COMPOSITE, np.int64)
            if s2_image:
                crops = self._composite(patch_number)[crop_rows, crop_cols]
        else:
            date = choose_image_dates(
                rng, patch, num, self.image_date, scores=self._date_scores(patch_number)
            )
            if s2_image:
                crops = gather_crops(patch.bands, date, crop_rows, crop_cols, columns)
                if patch.reflectance_scale != 1.0 or crops.dtype != np.float32:
                    crops = crops.astype(np.float32) / np.float32(patch.reflectance_scale)
        if s2_image:
            out["image"] = np.asarray(crops, dtype=np.float32)
        if "s1_image" in self.views:
            s1_date = s1_image_dates(patch, s2_image_days(patch, date), self.s1_max_gap_days)
            if np.any(s1_date < 0):  # excluded in __init__; a guard against misuse
                raise RuntimeError(f"patch {patch.patch_id!r}: an S2 image date without S1")
            s1_crops = gather_crops(
                np.ascontiguousarray(patch.s1_bands),
                s1_date,
                crop_rows,
                crop_cols,
                self._s1_columns,
            )
            out["s1_image"] = np.asarray(s1_crops, dtype=np.float32)
        return out

    def sample_batch(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> dict[str, np.ndarray]:
        """Draws one batch of ``batch_size`` pairs.

        Args:
          batch_size: number of pairs ``N``.
          rng: generator to draw from; the sampler's own seeded generator when None.

        Returns:
          dict with the keys of the two views (:data:`VIEW_KEYS`): ``bands`` ``(N, T, C)``
          float32 (NaN on no-data and padding), ``dates`` ``(N, T)`` float32 days since
          1970-01-01, ``mask`` ``(N, T)`` bool, ``image`` ``(N, k, k, Ci)`` float32
          reflectance crops (NaN = no-data); ``s1_bands`` ``(N, T, C1)`` float32 dB,
          ``s1_dates``, ``s1_mask``; ``s1_image`` ``(N, k, k, C2)`` float32 dB;
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

    @property
    def keys(self) -> tuple[str, ...]:
        """The batch keys, in order."""
        return tuple(key for view in self.views for key in VIEW_KEYS[view])
