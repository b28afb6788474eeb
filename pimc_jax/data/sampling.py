"""Pixel sampling, image crops and pair batches for pre-training; pixel sets for evaluation.

Pre-training pairs: from each patch a few pixels are sampled (uniformly at
random by default, or spread along a Hilbert curve as in the paper); for each pixel the
*time-series view* is its band series over all dates, padded to a fixed ``max_dates``,
and the *image view* is a ``k × k`` crop centred on the pixel, taken from one acquisition
date (a random cloud-free-looking date by default, or the per-pixel median composite),
reflect-padded at the patch borders; it is normalised per band either here (when the
sampler is given band statistics) or by the model.

Everything here is host-side NumPy; batches follow the "pixel-series batch" contract:
``bands`` ``(N, T, C)`` float32, ``dates`` ``(N, T)`` float32, ``mask`` ``(N, T)`` bool,
``image`` ``(N, k, k, Ci)`` float32 and, for evaluation, ``labels`` ``(N,)`` int32.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np

from pimc_jax.data.patches import Patch
from pimc_jax.indices import band_index, resolve_band_names

SAMPLING_METHODS: tuple[str, ...] = ("uniform", "hilbert")
IMAGE_DATE_METHODS: tuple[str, ...] = ("random_clear", "median", "fixed_index")
# Date index standing for the per-pixel median composite in :func:`choose_image_dates`.
MEDIAN_COMPOSITE = -1


def _hilbert_d2xy(order: int, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hilbert curve position ``distance`` → ``(x, y)`` on a ``2**order`` square.

    The classic iterative conversion (Wikipedia, "Hilbert curve"), vectorised over
    ``distance``. The curve starts at ``(0, 0)`` and ends at ``(n - 1, 0)``.
    """
    x = np.zeros_like(distance)
    y = np.zeros_like(distance)
    t = distance.copy()
    s = 1
    while s < (1 << order):
        rx = 1 & (t // 2)
        ry = 1 & (t ^ rx)
        # Rotate the sub-square so the pieces join end to end.
        flip = (ry == 0) & (rx == 1)
        x = np.where(flip, s - 1 - x, x)
        y = np.where(flip, s - 1 - y, y)
        swap = ry == 0
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        x = x + s * rx
        y = y + s * ry
        t = t // 4
        s *= 2
    return x, y


@functools.lru_cache(maxsize=32)
def _hilbert_curve_order_cached(height: int, width: int) -> np.ndarray:
    side = 1
    order = 0
    while side < max(height, width):
        side *= 2
        order += 1
    x, y = _hilbert_d2xy(order, np.arange(side * side, dtype=np.int64))
    inside = (y < height) & (x < width)
    flat = (y * width + x)[inside]
    flat.flags.writeable = False
    return flat


def hilbert_curve_order(height: int, width: int) -> np.ndarray:
    """Flat pixel indices (``row * width + col``) in the order a Hilbert curve visits them.

    The curve is the classic one on the ``n × n`` square, ``n`` the next power of two
    ``>= max(height, width)``, with ``x`` the column and ``y`` the row: it starts at pixel
    (0, 0), and on a 2×2 grid visits (row, col) = (0, 0), (1, 0), (1, 1), (0, 1). For
    non-power-of-two shapes the pixels outside ``height × width`` are dropped, so the
    order stays a permutation but a few consecutive pixels are no longer 4-neighbours.

    Returns:
      ``(height * width,)`` int64 permutation of ``range(height * width)`` (read-only).
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height} x {width}")
    return _hilbert_curve_order_cached(int(height), int(width))


def sample_pixels(
    rng: np.random.Generator, height: int, width: int, num: int, method: str = "uniform"
) -> np.ndarray:
    """Samples ``num`` pixel positions of a ``height × width`` grid.

    Methods:
      - ``"uniform"``: uniformly at random, without replacement when
        ``num <= height * width`` (with replacement otherwise).
      - ``"hilbert"``: ``num`` evenly spaced positions along the Hilbert curve
        (:func:`hilbert_curve_order`), shifted by one random offset in ``[0, spacing)``.
        Since the curve preserves locality, evenly spaced curve positions are spread
        evenly over the patch: every region of ``height * width / num`` pixels gets about
        one sample. With ``num > height * width`` positions wrap around the curve.

    Returns:
      ``(num, 2)`` int64 ``(row, col)`` positions.
    """
    total = height * width
    if total < 1:
        raise ValueError(f"cannot sample pixels from an empty {height} x {width} grid")
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if method == "uniform":
        flat = rng.choice(total, size=num, replace=num > total)
    elif method == "hilbert":
        spacing = total / max(num, 1)
        positions = np.floor(rng.uniform(0.0, spacing) + spacing * np.arange(num)).astype(np.int64)
        flat = hilbert_curve_order(height, width)[positions % total]
    else:
        raise ValueError(
            f"unknown pixel sampling method {method!r}; choose from {SAMPLING_METHODS}"
        )
    return np.stack(np.divmod(flat.astype(np.int64), width), axis=-1)


def _reflect_index(index: np.ndarray, length: int) -> np.ndarray:
    """Maps any integer index into ``[0, length)`` as ``np.pad(mode="reflect")`` does.

    Reflection about the first and last element without repeating them, repeated as often
    as needed: the result is periodic with period ``2 * (length - 1)``.
    """
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.mod(index, period)
    return np.where(index >= length, period - index, index)


def _crop_indices(
    centers: np.ndarray, size: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, size, 1)`` rows and ``(N, 1, size)`` cols of reflect-padded crops."""
    offsets = np.arange(size) - size // 2
    rows = _reflect_index(centers[:, 0, None] + offsets, height)
    cols = _reflect_index(centers[:, 1, None] + offsets, width)
    return rows[:, :, None], cols[:, None, :]


def _check_centers(centers: np.ndarray, height: int, width: int) -> np.ndarray:
    centers = np.asarray(centers)
    if centers.ndim != 2 or centers.shape[1] != 2:
        raise ValueError(f"centers must have shape (N, 2), got {centers.shape}")
    centers = centers.astype(np.int64)
    if centers.size and (
        centers.min() < 0 or centers[:, 0].max() >= height or centers[:, 1].max() >= width
    ):
        raise ValueError(f"crop centers must lie inside the {height} x {width} image")
    return centers


def extract_crops(image: np.ndarray, centers: np.ndarray, size: int) -> np.ndarray:
    """Crops ``size × size`` windows centred on ``centers``, reflect-padded at the borders.

    The centre pixel lands at ``crop[size // 2, size // 2]`` (for even ``size`` the window
    reaches one pixel further up/left than down/right). Pixels beyond the image are filled
    as ``np.pad(image, pad, mode="reflect")`` would, including windows larger than the
    image (reflection repeats periodically; a 1-pixel-wide image repeats its pixel).

    Args:
      image: ``(H, W, C)`` array.
      centers: ``(N, 2)`` int ``(row, col)`` inside the image.
      size: crop height and width, >= 1.

    Returns:
      ``(N, size, size, C)`` array of ``image``'s dtype.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got shape {image.shape}")
    if size < 1:
        raise ValueError(f"crop size must be >= 1, got {size}")
    height, width, _ = image.shape
    centers = _check_centers(centers, height, width)
    rows, cols = _crop_indices(centers, size, height, width)
    return image[rows, cols]


def clear_date_scores(patch: Patch, blue_band: str = "B2") -> np.ndarray:
    """Cloudiness score per date: lower is clearer.

    Clouds are bright in the blue band, so the score is the date's mean blue reflectance
    plus its fraction of no-data (NaN) pixels; a date without any valid blue pixel scores
    ``inf``. Without a blue band the mean over all bands is used.

    Returns:
      ``(T,)`` float64 scores.
    """
    try:
        blue = patch.reflectance(np.s_[..., band_index(patch.band_names, blue_band)])
    except ValueError:
        blue = patch.reflectance().mean(axis=-1)
    valid = np.isfinite(blue)
    count = valid.sum(axis=(1, 2))
    total = np.where(valid, blue, 0.0).sum(axis=(1, 2), dtype=np.float64)
    nan_fraction = 1.0 - count / valid[0].size
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = total / count + nan_fraction
    return np.where(count > 0, scores, np.inf)


def choose_image_dates(
    rng: np.random.Generator,
    patch: Patch,
    num: int,
    method: str = "random_clear",
    *,
    index: int = 0,
    scores: np.ndarray | None = None,
) -> np.ndarray:
    """Chooses the acquisition date of the image view of ``num`` pixels of ``patch``.

    Methods:
      - ``"random_clear"``: for each pixel, a date drawn uniformly among the clearest half
        of the dates (``ceil(T / 2)`` lowest :func:`clear_date_scores`; dates with no valid
        pixel are never drawn unless all are so).
      - ``"fixed_index"``: date ``index`` for every pixel (negative counts from the end).
      - ``"median"``: :data:`MEDIAN_COMPOSITE` for every pixel, meaning the per-pixel
        median over all dates (see :func:`median_composite`).

    ``scores`` (``(T,)``, :func:`clear_date_scores` of ``patch``) may be passed in by a
    caller that draws from the same patch repeatedly.

    Returns:
      ``(num,)`` int64 date indices in ``[0, T)``, or :data:`MEDIAN_COMPOSITE`.
    """
    num_dates = patch.num_dates
    if method == "random_clear":
        if scores is None:
            scores = clear_date_scores(patch)
        elif np.shape(scores) != (num_dates,):
            raise ValueError(f"scores must have shape ({num_dates},), got {np.shape(scores)}")
        ranked = np.argsort(scores, kind="stable")
        usable = max(1, int(np.isfinite(scores).sum()))
        candidates = ranked[: min(usable, (num_dates + 1) // 2)]
        return candidates[rng.integers(0, candidates.size, size=num)].astype(np.int64)
    if method == "fixed_index":
        if not -num_dates <= index < num_dates:
            raise ValueError(
                f"image date index {index} out of range for patch {patch.patch_id!r} with "
                f"{num_dates} dates"
            )
        return np.full(num, index % num_dates, dtype=np.int64)
    if method == "median":
        return np.full(num, MEDIAN_COMPOSITE, dtype=np.int64)
    raise ValueError(f"unknown image date method {method!r}; choose from {IMAGE_DATE_METHODS}")


def median_composite(bands: np.ndarray) -> np.ndarray:
    """Per-pixel, per-band median over dates, ignoring NaN; ``(T, H, W, C)`` → ``(H, W, C)``.

    Pixels without any valid date stay NaN. Clouds cover a minority of dates, so the
    median is a cloud-free-looking composite.

    Returns:
      ``(H, W, C)`` float32.
    """
    bands = np.asarray(bands)
    if bands.ndim != 4:
        raise ValueError(f"bands must be (T, H, W, C), got shape {bands.shape}")
    with warnings.catch_warnings():
        # An all-NaN pixel gives NaN, which is the intended result.
        warnings.filterwarnings("ignore", message="All-NaN slice encountered")
        return np.nanmedian(bands, axis=0).astype(np.float32)


def pad_series(bands: np.ndarray, dates: np.ndarray, max_dates: int) -> dict[str, np.ndarray]:
    """Pads (or evenly subsamples) band series to exactly ``max_dates`` dates.

    Series shorter than ``max_dates`` are padded at the end: bands with NaN, dates by
    repeating the last date, mask False. Series longer than ``max_dates`` are subsampled
    at evenly spaced positions ``floor(linspace(0, T - 1, max_dates) + 0.5)``, which keeps
    the first and the last date and spreads the rest over the season.

    Args:
      bands: ``(N, T, C)`` reflectance (NaN = no-data).
      dates: ``(T,)`` dates shared by all series, or ``(N, T)``.
      max_dates: the fixed length ``T'``.

    Returns:
      dict with ``bands`` ``(N, T', C)`` float32, ``dates`` ``(N, T')`` float32 and
      ``mask`` ``(N, T')`` bool (True = real acquisition).
    """
    bands = np.asarray(bands)
    dates = np.asarray(dates)
    if bands.ndim != 3:
        raise ValueError(f"bands must be (N, T, C), got shape {bands.shape}")
    num_series, num_dates, num_bands = bands.shape
    if dates.shape == (num_dates,):
        dates = np.broadcast_to(dates, (num_series, num_dates))
    if dates.shape != (num_series, num_dates):
        raise ValueError(
            f"dates must be ({num_dates},) or ({num_series}, {num_dates}) to match bands "
            f"{bands.shape}, got {dates.shape}"
        )
    if max_dates < 1:
        raise ValueError(f"max_dates must be >= 1, got {max_dates}")
    if num_dates < 1:
        raise ValueError("cannot pad series without any date")
    if num_dates > max_dates:
        keep = np.floor(np.linspace(0, num_dates - 1, max_dates) + 0.5).astype(np.int64)
        bands, dates, num_dates = bands[:, keep], dates[:, keep], max_dates
    out_bands = np.full((num_series, max_dates, num_bands), np.nan, dtype=np.float32)
    out_bands[:, :num_dates] = bands
    out_dates = np.empty((num_series, max_dates), dtype=np.float32)
    out_dates[:, :num_dates] = dates
    out_dates[:, num_dates:] = dates[:, -1:]
    mask = np.zeros((num_series, max_dates), dtype=bool)
    mask[:, :num_dates] = True
    return {"bands": out_bands, "dates": out_dates, "mask": mask}


def band_statistics(
    patches: Sequence[Patch],
    band_names: Sequence[str],
    *,
    max_patches: int | None = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over all pixels and dates, ignoring NaN.

    Args:
      patches: the patches; at most ``max_patches`` of them, evenly spaced, are read
        (``None`` reads all).
      band_names: the bands, looked up by name in each patch.

    Returns:
      ``(mean, std)``, each ``(len(band_names),)`` float32; a zero std is replaced by 1.
    """
    if not patches:
        raise ValueError("band_statistics needs at least one patch")
    chosen = list(patches)
    if max_patches is not None and len(chosen) > max_patches:
        keep = np.linspace(0, len(chosen) - 1, max_patches).round().astype(np.int64)
        chosen = [chosen[i] for i in keep]
    num_bands = len(band_names)
    total = np.zeros(num_bands)
    total_sq = np.zeros(num_bands)
    count = np.zeros(num_bands)
    for patch in chosen:
        columns = [band_index(patch.band_names, name) for name in band_names]
        values = patch.reflectance(np.s_[..., columns]).reshape(-1, num_bands).astype(np.float64)
        valid = np.isfinite(values)
        values = np.where(valid, values, 0.0)
        total += values.sum(axis=0)
        total_sq += (values**2).sum(axis=0)
        count += valid.sum(axis=0)
    if np.any(count == 0):
        missing = [name for name, c in zip(band_names, count, strict=True) if c == 0]
        raise ValueError(f"no valid (non-NaN) value for bands {missing}")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def normalize_image(crops: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(crops - mean) / std`` per band (last axis), float32; NaN (no-data) becomes 0."""
    crops = np.asarray(crops, dtype=np.float32)
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if mean.shape != (crops.shape[-1],) or std.shape != mean.shape:
        raise ValueError(
            f"mean {mean.shape} and std {std.shape} must be ({crops.shape[-1]},) to match "
            f"crops {crops.shape}"
        )
    return np.nan_to_num((crops - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)


def shard_patches(
    patches: Sequence[Patch], process_index: int, process_count: int
) -> Sequence[Patch]:
    """Patches of host ``process_index`` out of ``process_count``: every ``count``-th one.

    The shards are disjoint and cover all patches; their sizes differ by at most one. A
    slice of ``patches``, so a lazy sequence stays lazy.
    """
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"need 0 <= process_index < process_count, got {process_index} and {process_count}"
        )
    return patches[process_index::process_count]


def _gather_crops(
    bands: np.ndarray, date: np.ndarray, rows: np.ndarray, cols: np.ndarray, columns: np.ndarray
) -> np.ndarray:
    """``bands[date, rows, cols, columns]`` → ``(N, k, k, Ci)`` for ``(T, H, W, C)`` bands.

    One flat ``np.take`` of exactly the needed values, about twice as fast as broadcast
    fancy indexing on a C-contiguous stack.
    """
    _, height, width, num_bands = bands.shape
    if not bands.flags.c_contiguous:
        return bands[date[:, None, None, None], rows[..., None], cols[..., None], columns]
    pixel = (date[:, None, None] * height + rows) * width + cols
    return np.take(bands.reshape(-1), pixel[..., None] * num_bands + columns)


class PairSampler:
    """Draws pre-training batches of (pixel time series, image crop) pairs.

    Each batch picks ``ceil(batch_size / pixels_per_patch)`` distinct patches (with
    replacement only when there are fewer patches than that), samples
    ``pixels_per_patch`` pixels in each (:func:`sample_pixels`) and builds both views of
    every pixel; the last patch contributes only the pixels needed to reach
    ``batch_size``.

    Args:
      patches: the patches; all must hold ``image_bands``.
      pixels_per_patch: pixels drawn per patch.
      crop_size: image-view crop side ``k``.
      image_bands: bands of the image view, by name.
      max_dates: fixed series length ``T`` (see :func:`pad_series`).
      sampling: pixel sampling method, ``"uniform"`` or ``"hilbert"``.
      image_date: ``"random_clear"``, ``"median"`` or ``"fixed_index"`` (date 0); see
        :func:`choose_image_dates`.
      mean, std: ``(Ci,)`` per-band image statistics. When given, crops are normalised
        here with :func:`normalize_image` (zero mean, unit std, no-data → 0). When both
        are None the crops stay reflectance (NaN = no-data) for a model that normalises
        them itself (:func:`pimc_jax.preprocessing.normalize_crops`, whose statistics come from
        :func:`band_statistics`), so training and dense encoding see the same input.
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
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
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
        if (mean is None) != (std is None):
            raise ValueError("give both image mean and std, or neither")
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        if self.mean is not None and (
            self.mean.shape != (len(self.image_bands),) or self.std.shape != self.mean.shape
        ):
            raise ValueError(
                f"mean {self.mean.shape} and std {self.std.shape} must have one value per "
                f"image band {self.image_bands}"
            )
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
        crop_rows, crop_cols = _crop_indices(pixels, self.crop_size, patch.height, patch.width)
        columns = self._image_columns[patch_number]
        if self.image_date == "median":
            crops = self._composite(patch_number)[crop_rows, crop_cols]
        else:
            date = choose_image_dates(
                rng, patch, num, self.image_date, scores=self._date_scores(patch_number)
            )
            crops = _gather_crops(patch.bands, date, crop_rows, crop_cols, columns)
            if patch.reflectance_scale != 1.0 or crops.dtype != np.float32:
                crops = crops.astype(np.float32) / np.float32(patch.reflectance_scale)
        if self.mean is None:
            series["image"] = np.asarray(crops, dtype=np.float32)
        else:
            series["image"] = normalize_image(crops, self.mean, self.std)
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
          ``image`` ``(N, k, k, Ci)`` float32 crops, normalised when the sampler has
          ``mean``/``std`` and reflectance otherwise; ``T = max_dates``.
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


def pixel_dataset(
    patches: Sequence[Patch],
    *,
    pixels_per_patch: int,
    max_dates: int,
    seed: int = 0,
    exclude_classes: Sequence[int] = (),
) -> dict[str, np.ndarray]:
    """Labelled pixels drawn from each patch, for the pixel-level evaluations.

    From every patch, ``min(pixels_per_patch, #eligible)`` pixels are drawn uniformly
    without replacement among the pixels whose label is not in ``exclude_classes``
    (PASTIS convention: exclude background 0 and void 19; synthetic data: background 0).

    Returns:
      dict with ``bands`` ``(N, T, C)`` float32, ``dates`` ``(N, T)`` float32, ``mask``
      ``(N, T)`` bool (see :func:`pad_series`, ``T = max_dates``), ``labels`` ``(N,)``
      int32 and ``fold`` ``(N,)`` int32, the fold of each pixel's patch.

    Raises:
      ValueError: no patch, a patch without labels, or patches with different bands.
    """
    if not patches:
        raise ValueError("pixel_dataset needs at least one patch")
    rng = np.random.default_rng(seed)
    excluded = np.asarray(list(exclude_classes), dtype=np.int64)
    band_names = patches[0].band_names
    parts = []
    for patch in patches:
        if patch.labels is None:
            raise ValueError(f"patch {patch.patch_id!r} has no labels")
        if patch.band_names != band_names:
            raise ValueError(
                f"patch {patch.patch_id!r} has bands {patch.band_names}, expected {band_names}"
            )
        eligible = np.flatnonzero(~np.isin(patch.labels.ravel(), excluded))
        if eligible.size == 0:
            continue
        flat = rng.choice(eligible, size=min(pixels_per_patch, eligible.size), replace=False)
        rows, cols = np.divmod(flat, patch.width)
        series = pad_series(
            np.swapaxes(patch.reflectance(np.s_[:, rows, cols, :]), 0, 1), patch.dates, max_dates
        )
        series["labels"] = patch.labels[rows, cols].astype(np.int32)
        series["fold"] = np.full(flat.size, patch.fold, dtype=np.int32)
        parts.append(series)
    if not parts:
        num_bands = len(band_names)
        return {
            "bands": np.zeros((0, max_dates, num_bands), np.float32),
            "dates": np.zeros((0, max_dates), np.float32),
            "mask": np.zeros((0, max_dates), bool),
            "labels": np.zeros((0,), np.int32),
            "fold": np.zeros((0,), np.int32),
        }
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
