"""The views of a sampled pixel: its padded band series and an image crop around it.

Which views feed the two towers is a choice (:data:`VIEWS`, ``config.model.views``):
``s2_rp`` (Sentinel-2 series, turned into recurrence plots in the step), ``s2_image`` (a
Sentinel-2 crop), ``s1_rp`` (the pixel's Sentinel-1 series, plotted in the step) and
``s1_image`` (a Sentinel-1 crop at the S1 date nearest to the S2 image date,
:func:`s1_image_dates`) and ``s2_image_aug`` (the Sentinel-2 crop again, augmented
SimCLR-style in the step). PIMC's pair is ``("s2_rp", "s2_image")``; Jain et al. (2022)
pair ``("s1_image", "s2_image")``; the augmentation-only baseline they beat pairs
``("s2_image_aug", "s2_image")``.

The *time-series view* of a pixel is its band series over all dates, padded (or evenly
subsampled) to a fixed length (:func:`pad_series`). The *image view* is a ``k × k`` crop
centred on the pixel (:func:`extract_crops`), reflect-padded at the patch borders, taken
from one acquisition date (:func:`choose_image_dates`: a random clear-looking date by
default, ranked by :func:`clear_date_scores`) or from the per-pixel median composite
(:func:`median_composite`). Host-side NumPy; crops stay reflectance (NaN = no-data), the
model standardises them (:func:`pimc_jax.preprocessing.normalize_crops`).
"""

from __future__ import annotations

import warnings

import numpy as np

from pimc_jax.data.patches import Patch, series_dates
from pimc_jax.data.radar import nearest_dates
from pimc_jax.indices import band_index
from pimc_jax.vocabulary import (  # noqa: F401  (re-exported: the view vocabulary)
    IMAGE_VIEWS,
    PLOT_VIEWS,
    S1_VIEWS,
    S2_IMAGE_VIEWS,
    VIEW_KEYS,
    VIEWS,
    check_views,
    pad_rows,
)

IMAGE_DATE_METHODS: tuple[str, ...] = ("random_clear", "median", "fixed_index")
# Date index standing for the per-pixel median composite in :func:`choose_image_dates`.
MEDIAN_COMPOSITE = -1


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


def crop_indices(
    centers: np.ndarray, size: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of reflect-padded ``size × size`` crops (see :func:`extract_crops`).

    Args:
      centers: ``(N, 2)`` int ``(row, col)`` inside a ``height × width`` image.
      size: crop side.

    Returns:
      ``(N, size, 1)`` rows and ``(N, 1, size)`` cols, int64: ``image[rows, cols]`` is the
      ``(N, size, size, ...)`` stack of crops.
    """
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
    rows, cols = crop_indices(centers, size, height, width)
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
    dates = series_dates(dates, num_series, num_dates, "pad_series")
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


def gather_crops(
    bands: np.ndarray, date: np.ndarray, rows: np.ndarray, cols: np.ndarray, columns: np.ndarray
) -> np.ndarray:
    """Crops of the chosen dates and bands: ``bands[date, rows, cols, columns]``.

    One flat ``np.take`` of exactly the needed values, about twice as fast as broadcast
    fancy indexing on a C-contiguous stack.

    Args:
      bands: ``(T, H, W, C)`` band values as stored (any dtype).
      date: ``(N,)`` int date index of each crop.
      rows, cols: ``(N, k, 1)`` and ``(N, 1, k)`` from :func:`crop_indices`.
      columns: ``(Ci,)`` int band columns.

    Returns:
      ``(N, k, k, Ci)`` array of ``bands``' dtype.
    """
    _, height, width, num_bands = bands.shape
    if not bands.flags.c_contiguous:
        return bands[date[:, None, None, None], rows[..., None], cols[..., None], columns]
    pixel = (date[:, None, None] * height + rows) * width + cols
    return np.take(bands.reshape(-1), pixel[..., None] * num_bands + columns)


def s2_image_days(patch: Patch, dates: np.ndarray) -> np.ndarray:
    """Acquisition day of each chosen S2 image date (:func:`choose_image_dates`).

    The median composite (:data:`MEDIAN_COMPOSITE`) stands for the whole season: its day is
    the median of the patch's dates (the earlier middle date for an even count).

    Args:
      patch: the patch.
      dates: ``(N,)`` int date indices or :data:`MEDIAN_COMPOSITE`.

    Returns:
      ``(N,)`` int64 days since 1970-01-01.
    """
    dates = np.asarray(dates, np.int64)
    days = np.asarray(patch.dates, np.int64)
    centre = days[(days.size - 1) // 2]
    return np.where(dates == MEDIAN_COMPOSITE, centre, days[np.maximum(dates, 0)])


def s1_image_dates(patch: Patch, s2_days: np.ndarray, max_gap_days: float | None) -> np.ndarray:
    """Index of the S1 date of each ``s1_image`` crop: nearest to its S2 image day.

    Args:
      patch: a patch with Sentinel-1 (:attr:`Patch.has_s1`; without it every entry is -1).
      s2_days: ``(N,)`` S2 image days (:func:`s2_image_days`).
      max_gap_days: largest accepted ``|S1 day − S2 day|``; None accepts any.

    Returns:
      ``(N,)`` int32 indices into ``patch.s1_dates``, ``-1`` where no S1 date lies within
      ``max_gap_days`` (that pair has no S1 image and is dropped).
    """
    if not patch.has_s1:
        return np.full(np.shape(s2_days), -1, np.int32)
    return nearest_dates(patch.s1_dates, s2_days, max_gap_days)
