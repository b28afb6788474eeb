"""Recurrence plots of pixel time series, computed on the accelerator.

For a series ``x`` of length ``T`` the recurrence plot is the matrix of distances
between its (delay-embedded) states, ``R[i, j] = ‖x⃗_i − x⃗_j‖``. This module follows
:class:`pyts.image.RecurrencePlot` exactly (embedding, output size, thresholds, strict
``<`` binarisation) and adds what a training step needs: float32 throughout, any
leading batch shape, channels, normalisation to [0, 1], and resampling of irregular,
variable-length series onto a fixed grid (:mod:`pimc_jax.resample`) so that every pixel
yields an ``S × S`` plot.

The public functions are pure and already wrapped in :func:`jax.jit` with every
configuration argument static (compiled once per configuration and input shape);
called inside another jitted function they are simply inlined, so the configuration
must be Python values there too (a train step closes over them).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pimc_jax.indices import PAPER_INDICES, check_numeric, vegetation_indices
from pimc_jax.resample import apply_plan, check_size, interpolation_plan, resample_series

Threshold = float | str | None

#: Plot channel kinds of :func:`index_recurrence_plots`, each ``(S', S')`` per series:
#: ``distance`` ``|x_i − x_j|`` (the paper's plot, with the embedding/threshold options),
#: ``difference`` ``x_j − x_i`` (keeps the direction of change) and ``level``
#: ``(x_i + x_j) / 2`` (keeps the level; its diagonal is the series itself).
PLOT_CHANNELS: tuple[str, ...] = ("distance", "difference", "level")
#: What the resampled time axis spans (:func:`index_recurrence_plots`).
PLOT_SPANS: tuple[str, ...] = ("valid", "acquisitions")


def check_plot_channels(channels: Sequence[str]) -> tuple[str, ...]:
    """``channels`` as a tuple, if they are distinct kinds of :data:`PLOT_CHANNELS`.

    Raises:
      ValueError: no kind, an unknown kind, or a kind given twice.
    """
    channels = tuple(channels)
    unknown = [c for c in channels if c not in PLOT_CHANNELS]
    if unknown or not channels or len(set(channels)) != len(channels):
        raise ValueError(
            f"plot channels must be distinct names from {PLOT_CHANNELS}, got {channels}"
        )
    return channels


def _embedding(value: int | float, n_timestamps: int, name: str) -> int:
    """An embedding parameter as an int, with pyts's rules (a float is a fraction of T)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be an int or a float, got {value!r}")
    if isinstance(value, numbers.Integral):
        if not 1 <= value <= n_timestamps:
            raise ValueError(
                f"{name} as an integer must be in [1, n_timestamps={n_timestamps}], got {value}"
            )
        return int(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} as a float must be in (0, 1], got {value}")
    return math.ceil(value * n_timestamps)


def _check_threshold(threshold: Threshold, percentage: float) -> None:
    if isinstance(threshold, str):
        if threshold not in ("point", "distance"):
            raise ValueError(
                f"threshold must be None, 'point', 'distance' or a positive number, "
                f"got {threshold!r}"
            )
    elif threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise ValueError(
                f"threshold must be None, 'point', 'distance' or a positive number, "
                f"got {threshold!r}"
            )
        if threshold <= 0:
            raise ValueError(f"a numeric threshold must be > 0, got {threshold}")
    if isinstance(percentage, bool) or not isinstance(percentage, numbers.Real):
        raise ValueError(f"percentage must be a number in [0, 100], got {percentage!r}")
    if not 0 <= percentage <= 100:
        raise ValueError(f"percentage must be in [0, 100], got {percentage}")


def _point_threshold_mask(
    dist: jnp.ndarray, percentage: float, plot_axes: tuple[int, int]
) -> jnp.ndarray:
    """``dist < percentile(dist, percentage)`` per plot, with NumPy's 'linear' percentile.

    The percentile of the ``n = T'²`` entries lies at the static position
    ``p = (n − 1) · percentage / 100`` (float64, as NumPy computes it), between the order
    statistics ``F[⌊p⌋] ≤ F[⌊p⌋ + 1]``. Rather than interpolating a float32 threshold,
    whose rounding could land on either of them, the comparison is resolved on the order
    statistics: at an integer ``p`` it is ``d < F[p]``; otherwise the threshold lies
    strictly between the two, so it is ``d ≤ F[⌊p⌋]`` when ``F[⌊p⌋ + 1] > F[⌊p⌋]`` and
    ``d < F[⌊p⌋]`` when they are equal.

    ``F[k]`` is found by bisection on the float32 bit patterns (order-preserving for
    non-negative floats): 31 counting passes, no sort (XLA's CPU sort is very slow).
    Counts use the strict upper triangle only: a distance plot is exactly symmetric
    with a zero diagonal, so ``#{F ≤ v} = T' + 2 · #{upper ≤ v}`` for ``v ≥ 0``.
    """
    size = dist.shape[plot_axes[0]]
    n = size * size
    position = (n - 1) * (percentage / 100)
    lower = math.floor(position)
    fraction = position - lower
    # (..., T', T') with the plot axes last, then the strict upper triangle: (..., P).
    square = jnp.moveaxis(dist, plot_axes, (-2, -1))
    rows, cols = np.triu_indices(size, k=1)
    upper_bits = jax.lax.bitcast_convert_type(square[..., rows, cols], jnp.int32)

    def count_at_most(bits: jnp.ndarray) -> jnp.ndarray:
        return size + 2 * jnp.sum(upper_bits <= bits[..., None], axis=-1, dtype=jnp.int32)

    def bisect(_: int, bounds: tuple[jnp.ndarray, jnp.ndarray]):
        low, high = bounds  # invariant: count(high) > lower
        middle = low + (high - low) // 2
        enough = count_at_most(middle) > lower
        return jnp.where(enough, low, middle + 1), jnp.where(enough, middle, high)

    batch = upper_bits.shape[:-1]
    low = jnp.zeros(batch, jnp.int32)
    high = jnp.full(batch, np.float32(np.inf).view(np.int32), jnp.int32)
    _, kth_bits = jax.lax.fori_loop(0, 31, bisect, (low, high))
    kth = jax.lax.bitcast_convert_type(kth_bits, jnp.float32)
    kth_expanded = jnp.expand_dims(kth, plot_axes)
    if fraction == 0.0:
        return dist < kth_expanded
    # F[lower + 1] > F[lower] exactly when F[lower] occurs no further than position lower.
    next_is_larger = jnp.expand_dims(count_at_most(kth_bits) <= lower + 1, plot_axes)
    return jnp.where(next_is_larger, dist <= kth_expanded, dist < kth_expanded)


@functools.partial(
    jax.jit,
    static_argnames=(
        "dimension",
        "time_delay",
        "threshold",
        "percentage",
        "normalize",
        "channels_last",
    ),
)
def recurrence_plot(
    x: jnp.ndarray,
    *,
    dimension: int | float = 1,
    time_delay: int | float = 1,
    threshold: Threshold = None,
    percentage: float = 10,
    normalize: bool = False,
    channels_last: bool = False,
) -> jnp.ndarray:
    r"""Recurrence plots of a batch of time series, with ``pyts.image.RecurrencePlot`` semantics.

    Trajectories ``x⃗_i = (x_i, x_{i+τ}, …, x_{i+(m−1)τ})`` for ``i < T' = T − (m−1)τ``;
    ``D[i, j] = ‖x⃗_i − x⃗_j‖₂`` (for ``m = 1`` simply ``|x_i − x_j|``). Then

    - ``threshold=None``: the plot is ``D`` (unthresholded distances);
    - ``threshold='point'``: ``D < ε`` with ``ε`` the ``percentage``-th percentile of
      the ``T'²`` entries of that plot (NumPy's default 'linear' percentile);
    - ``threshold='distance'``: ``D < (percentage / 100) · max D`` per plot;
    - ``threshold=ε > 0``: ``D < ε``.

    Binary plots are returned as 0.0/1.0. Each series (each leading index and, with
    ``channels_last``, each channel) gets its own plot and its own threshold. ``x``
    should be finite (pyts rejects NaN; here a NaN propagates into its rows and columns);
    every finite float32 input gives a finite plot (distances beyond the largest float32
    saturate there).
    Unthresholded plots are differentiable with finite gradients (also at ``D = 0``).
    ``'point'`` needs an order statistic of each plot, found by a 31-step bisection
    rather than a sort, so it costs a few dozen passes over the plots.

    Args:
      x: ``(..., T)`` series, or ``(..., T, C)`` with ``channels_last=True``; cast to
        float32.
      dimension: embedding dimension ``m``; an int in ``[1, T]``, or a float in
        ``(0, 1]`` meaning ``ceil(dimension · T)`` (as in pyts).
      time_delay: delay ``τ``; an int in ``[1, T]``, or a float fraction of ``T``.
      threshold: None, ``'point'``, ``'distance'`` or a positive number.
      percentage: in ``[0, 100]``; used by ``'point'`` and ``'distance'``.
      normalize: divide each unthresholded plot by its maximum so it lies in [0, 1]; a
        constant series (maximum 0) gives an all-zero plot. Binary plots already lie in
        {0, 1} and are returned unchanged.
      channels_last: ``x`` has a trailing channel axis, kept last in the output.

    Returns:
      float32 ``(..., T', T')``, or ``(..., T', T', C)`` with ``channels_last``.

    Raises:
      ValueError: bad ``dimension``/``time_delay``/``threshold``/``percentage``, an
        embedding longer than the series, or ``x`` of too low rank.
    """
    x = jnp.asarray(x, dtype=jnp.float32)
    min_rank = 2 if channels_last else 1
    if x.ndim < min_rank:
        raise ValueError(
            f"x must have rank >= {min_rank} (time{', channel' if channels_last else ''} "
            f"last), got shape {x.shape}"
        )
    time_axis = -2 if channels_last else -1
    n_timestamps = x.shape[time_axis]
    m = _embedding(dimension, n_timestamps, "dimension")
    tau = _embedding(time_delay, n_timestamps, "time_delay")
    size = n_timestamps - (m - 1) * tau
    if size < 1:
        raise ValueError(
            f"dimension={dimension} and time_delay={time_delay} leave no trajectory in a "
            f"series of length {n_timestamps}"
        )
    _check_threshold(threshold, percentage)

    # Row/column views of a (..., T'[, C]) coordinate for the (..., T', T'[, C]) plot.
    if channels_last:
        rows = lambda c: c[..., :, None, :]
        cols = lambda c: c[..., None, :, :]
        plot_axes = (-3, -2)
    else:
        rows = lambda c: c[..., :, None]
        cols = lambda c: c[..., None, :]
        plot_axes = (-2, -1)

    # Series with values beyond ±2^60 are divided by a power of two (exact) first, so no
    # difference or square overflows float32; distances are scaled back and saturate at
    # the largest float32 (normalised and binary plots are scale-free).
    amax = jnp.max(jnp.abs(x), axis=time_axis, keepdims=True)
    huge = jnp.isfinite(amax) & (amax > 2.0**60)
    # amax = mantissa · 2^exponent with mantissa in [0.5, 1): |x| · 2^-exponent < 1, exact.
    exponent = jnp.where(huge, jnp.frexp(jnp.where(huge, amax, 1.0))[1], 0)
    x = jnp.ldexp(x, -exponent)
    plot_exponent = rows(exponent)

    if m == 1:
        dist = jnp.abs(rows(x) - cols(x))
        # max |x_i − x_j| = max x − min x exactly (rounding is monotone): O(T), not O(T²).
        peak = lambda: jnp.expand_dims(x.max(time_axis) - x.min(time_axis), plot_axes)
    else:
        coords = [
            jax.lax.slice_in_dim(x, k * tau, k * tau + size, axis=time_axis) for k in range(m)
        ]
        squared = sum(jnp.square(rows(c) - cols(c)) for c in coords)
        positive = squared > 0
        # Double where: sqrt has an infinite derivative at 0 (the diagonal).
        dist = jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)
        peak = lambda: dist.max(plot_axes, keepdims=True)

    if threshold is None:
        if not normalize:
            return jnp.minimum(jnp.ldexp(dist, plot_exponent), jnp.finfo(jnp.float32).max)
        top = peak()
        scale = jnp.where(top > 0, 1.0 / jnp.where(top > 0, top, 1.0), 0.0)
        return dist * scale
    if threshold == "point":
        binary = _point_threshold_mask(dist, percentage, plot_axes)
    elif threshold == "distance":
        binary = dist < (percentage / 100) * peak()
    else:
        binary = dist < jnp.ldexp(jnp.float32(threshold), -plot_exponent)
    return binary.astype(jnp.float32)


def index_recurrence_plots(
    bands: jnp.ndarray,
    dates: jnp.ndarray,
    mask: jnp.ndarray,
    *,
    band_names: str | Sequence[str],
    size: int,
    indices: Sequence[str] = PAPER_INDICES,
    scale: float = 1.0,
    nodata: float | None = None,
    normalize: bool = True,
    dimension: int | float = 1,
    time_delay: int | float = 1,
    threshold: Threshold = None,
    percentage: float = 10,
    channels: Sequence[str] = ("distance",),
    span: str = "valid",
) -> jnp.ndarray:
    """Spectral-index recurrence plots of a batch of pixel series: bands → ``(N, S', S', K·P)``.

    Steps, all on device: (1) :func:`~pimc_jax.indices.vegetation_indices`; a sample
    counts if ``mask`` is True, its date is finite and all ``K`` indices are valid (no
    NaN, ``nodata`` or implausible band value, see
    :data:`~pimc_jax.indices.PLAUSIBLE_REFLECTANCE`; no near-zero denominator); (2) the
    ``K`` index series are resampled with :func:`resample_series` onto ``size`` regular
    steps spanning the pixel's first to last counted date (``span="valid"``, the paper's
    resampling) or its first to last acquisition (``span="acquisitions"``: every date
    ``mask`` marks, counted or not, so that pixels of one calendar share one time axis
    whatever their clouds; the ends take the nearest counted value); no counted sample
    → zeros;
    (3) per index series ``x`` (length ``S``), the ``P = len(channels)`` plot kinds of
    :data:`PLOT_CHANNELS`:

    - ``distance``: :func:`recurrence_plot` with the given embedding/threshold options
      (``normalize`` scales each unthresholded plot to [0, 1] by its maximum);
    - ``difference``: ``R[i, j] = x_j − x_i`` for ``i, j < S'``;
    - ``level``: ``R[i, j] = (x_i + x_j) / 2`` for ``i, j < S'``.

    ``distance`` alone is the paper's plot. It is blind to the level of the series (a flat
    forest and a flat bare field give the same zero plot) and to the direction of change
    (green-up and senescence look alike); ``difference`` and ``level`` keep both, and
    together they hold the series itself (``x_i = level − difference / 2`` on row ``i``).
    ``normalize`` and thresholds apply to ``distance`` only.

    Args:
      bands: ``(N, T, C)`` reflectance (any leading shape ``(..., T, C)``), NaN = no data;
        any bool, int or float dtype, cast to float32.
      dates: ``(N, T)`` numeric dates in days, increasing over the real samples (ISO
        strings: convert with :func:`pimc_jax.data.user.dates_to_days`).
      mask: ``(N, T)`` bool, True = real acquisition.
      band_names: table name or ``C`` band names.
      size: number of resampled steps ``S``.
      indices: index names (:data:`pimc_jax.indices.INDEX_NAMES`) or band names (the
        band's reflectance series); see :func:`pimc_jax.indices.resolve_indices`.
      scale, nodata, normalize, dimension, time_delay, threshold, percentage: see
        :func:`~pimc_jax.indices.vegetation_indices` and :func:`recurrence_plot`.
      channels: plot kinds, in output order, each at most once.
      span: ``"valid"`` or ``"acquisitions"`` (step 2).

    Returns:
      ``(N, S', S', K·P)`` float32 with ``S' = S − (m − 1)τ``; channel ``p·K + k`` is kind
      ``channels[p]`` of index ``k``. Finite for every finite input (a pixel with no
      counted sample gives all-zero plots).

    Raises:
      ValueError: an unknown or repeated plot kind, a non-numeric (object, string,
        datetime64, complex) ``bands``/``dates``/``mask``, or see the functions above.
    """
    for value, name in ((bands, "bands"), (dates, "dates"), (mask, "mask")):
        check_numeric(value, name)
    check_size(size)
    channels = check_plot_channels(channels)
    if span not in PLOT_SPANS:
        raise ValueError(f"plot span must be one of {PLOT_SPANS}, got {span!r}")
    # Tuples, so that the configuration is hashable as static jit arguments.
    if not isinstance(band_names, str):
        band_names = tuple(band_names)
    return _index_recurrence_plots(
        bands,
        dates,
        mask,
        band_names=band_names,
        size=int(size),
        indices=tuple(indices),
        scale=scale,
        nodata=nodata,
        normalize=normalize,
        dimension=dimension,
        time_delay=time_delay,
        threshold=threshold,
        percentage=percentage,
        channels=channels,
        span=span,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "band_names",
        "size",
        "indices",
        "scale",
        "nodata",
        "normalize",
        "dimension",
        "time_delay",
        "threshold",
        "percentage",
        "channels",
        "span",
    ),
)
def _index_recurrence_plots(
    bands: jnp.ndarray,
    dates: jnp.ndarray,
    mask: jnp.ndarray,
    *,
    band_names: str | tuple[str, ...],
    size: int,
    indices: tuple[str, ...],
    scale: float,
    nodata: float | None,
    normalize: bool,
    dimension: int | float,
    time_delay: int | float,
    threshold: Threshold,
    percentage: float,
    channels: tuple[str, ...],
    span: str,
) -> jnp.ndarray:
    bands = jnp.asarray(bands, dtype=jnp.float32)
    dates = jnp.asarray(dates, dtype=jnp.float32)
    mask = jnp.asarray(mask, dtype=bool)
    if bands.ndim < 2 or dates.shape != bands.shape[:-1] or mask.shape != bands.shape[:-1]:
        raise ValueError(
            f"bands must be (..., T, C) and dates/mask (..., T); got bands {bands.shape}, "
            f"dates {dates.shape}, mask {mask.shape}"
        )
    values, index_ok = vegetation_indices(
        bands, band_names, indices, scale=scale, nodata=nodata, return_mask=True
    )
    valid = mask & index_ok & jnp.isfinite(dates)
    # One interpolation plan per pixel, shared by its K index channels.
    acquired = mask & jnp.isfinite(dates) if span == "acquisitions" else None
    plan = interpolation_plan(dates, valid, size, acquired)
    series = apply_plan(values, valid, plan, channels_last=True)  # (..., S, K)
    return series_recurrence_plots(
        series,
        channels,
        dimension=dimension,
        time_delay=time_delay,
        threshold=threshold,
        percentage=percentage,
        normalize=normalize,
    )


def series_recurrence_plots(
    series: jnp.ndarray,
    channels: Sequence[str],
    *,
    dimension: int | float = 1,
    time_delay: int | float = 1,
    threshold: Threshold = None,
    percentage: float = 10,
    normalize: bool = True,
) -> jnp.ndarray:
    """Plot kinds ``channels`` of regular series: ``(..., S, K)`` → ``(..., S', S', K·P)``.

    Channel ``p·K + k`` is kind ``channels[p]`` (:data:`PLOT_CHANNELS`) of series ``k``;
    ``distance`` is :func:`recurrence_plot` with the given options, ``difference`` and
    ``level`` use the first ``S' = S − (m − 1)τ`` states.
    """
    size = series.shape[-2]
    # difference/level use the first S' states: the size of the embedded distance plot.
    m = _embedding(dimension, size, "dimension")
    tau = _embedding(time_delay, size, "time_delay")
    states = series[..., : size - (m - 1) * tau, :]
    rows, cols = states[..., :, None, :], states[..., None, :, :]
    plots = {
        "distance": lambda: recurrence_plot(
            series,
            dimension=dimension,
            time_delay=time_delay,
            threshold=threshold,
            percentage=percentage,
            normalize=normalize,
            channels_last=True,
        ),
        "difference": lambda: cols - rows,
        "level": lambda: 0.5 * (rows + cols),
    }
    return jnp.concatenate([plots[kind]() for kind in channels], axis=-1)


__all__ = [
    "PLOT_CHANNELS",
    "PLOT_SPANS",
    "check_plot_channels",
    "index_recurrence_plots",
    "recurrence_plot",
    "resample_series",
    "series_recurrence_plots",
]
