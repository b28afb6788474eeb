"""Linear resampling of irregular, gappy pixel series onto a fixed number of steps.

Every pixel has its own acquisition dates and cloud gaps; a recurrence plot needs ``S``
regular steps. :func:`resample_series` interpolates each series between its valid
samples (as ``np.interp``), vectorised over any leading shape with an ``O(S log T)``
binary search per series, and :func:`interpolation_plan` / :func:`apply_plan` let
several channels of one pixel share the search.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp


def check_size(size: int) -> None:
    """Raises a one-line ValueError unless ``size`` is a positive int (a plot or step count)."""
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")


def interpolation_plan(
    dates: jnp.ndarray, valid: jnp.ndarray, size: int, span: jnp.ndarray | None = None
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Where each of ``size`` regular steps falls among a series' valid samples.

    Args:
      dates: ``(..., T)`` float32 dates, non-decreasing over the valid samples.
      valid: ``(..., T)`` bool; valid dates must be finite.
      size: number of output steps ``S``.
      span: ``(..., T)`` bool, a superset of ``valid`` with finite dates: the steps run
        from its first to its last date (default ``valid``). Steps before the first or
        after the last valid sample take that sample's value.

    Returns:
      ``(lower, upper, weight, any_valid)``: ``lower``/``upper`` ``(..., S)`` int32 sample
      indices and ``weight`` ``(..., S)`` float32 such that step ``k`` is
      ``v[lower] + weight · (v[upper] − v[lower])``; ``any_valid`` ``(...,)`` bool.
    """
    n_timestamps = dates.shape[-1]
    time_axis = dates.ndim - 1
    any_valid = valid.any(axis=-1)
    span = valid if span is None else span | valid
    first = jnp.where(any_valid, jnp.min(jnp.where(span, dates, jnp.inf), axis=-1), 0.0)
    last = jnp.where(any_valid, jnp.max(jnp.where(span, dates, -jnp.inf), axis=-1), 0.0)
    steps = jnp.arange(size, dtype=jnp.float32) / max(size - 1, 1)
    # Dates relative to the first valid one keep float32 precision for any origin; the
    # last step is exactly `last − first` since steps[-1] == 1.
    targets = (last - first)[..., None] * steps
    # Running maximum of the valid relative dates: non-decreasing, −inf before the first
    # valid sample, and it only increases at a valid sample.
    reached = jax.lax.cummax(jnp.where(valid, dates - first[..., None], -jnp.inf), time_axis)
    latest_valid = jax.lax.cummax(
        jnp.where(valid, jnp.arange(n_timestamps, dtype=jnp.int32), -1), time_axis
    )
    # count[k] = #{t : reached[t] ≤ target[k]}; binary search, O(S log T) per series.
    flat_reached = reached.reshape(-1, n_timestamps)
    flat_targets = targets.reshape(-1, size)
    count = jax.vmap(lambda a, v: jnp.searchsorted(a, v, side="right"))(flat_reached, flat_targets)
    count = count.reshape(targets.shape).astype(jnp.int32)
    # reached[count − 1] ≤ target < reached[count]: the left neighbour is the latest valid
    # sample up to count − 1, the right one is sample `count` itself (reached rose there,
    # so it is valid). With any valid sample, count ≥ 1 because targets ≥ 0.
    before = jnp.clip(count - 1, 0, n_timestamps - 1)
    has_right = count < n_timestamps
    after = jnp.where(has_right, count, before)
    lower = jnp.take_along_axis(latest_valid, before, axis=-1, mode="promise_in_bounds")
    lower = jnp.where(lower >= 0, lower, after)
    upper = jnp.where(has_right, after, lower)
    rel_lower = jnp.take_along_axis(reached, before, axis=-1, mode="promise_in_bounds")
    rel_upper = jnp.take_along_axis(reached, after, axis=-1, mode="promise_in_bounds")
    gap = rel_upper - rel_lower
    ok = has_right & (gap > 0) & jnp.isfinite(gap)
    weight = jnp.where(ok, (targets - rel_lower) / jnp.where(ok, gap, 1.0), 0.0)
    return lower, upper, weight, any_valid


def apply_plan(
    values: jnp.ndarray,
    valid: jnp.ndarray,
    plan: tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray],
    channels_last: bool,
) -> jnp.ndarray:
    """Interpolates ``(..., T)`` (or ``(..., T, C)``) values with a plan: ``(..., S[, C])``."""
    lower, upper, weight, any_valid = plan
    if channels_last:
        values = jnp.where(valid[..., None], values, 0.0)
        lower, upper, weight = lower[..., None], upper[..., None], weight[..., None]
        any_valid = any_valid[..., None, None]
        axis = -2
    else:
        values = jnp.where(valid, values, 0.0)
        any_valid = any_valid[..., None]
        axis = -1
    v_lower = jnp.take_along_axis(values, lower, axis=axis, mode="promise_in_bounds")
    v_upper = jnp.take_along_axis(values, upper, axis=axis, mode="promise_in_bounds")
    return jnp.where(any_valid, v_lower + weight * (v_upper - v_lower), 0.0)


@functools.partial(jax.jit, static_argnames=("size",))
def resample_series(
    values: jnp.ndarray, dates: jnp.ndarray, mask: jnp.ndarray, size: int
) -> jnp.ndarray:
    """Linearly interpolates irregular series onto ``size`` regular steps.

    A sample counts when ``mask`` is True and its value and date are finite. For each
    series the output steps are ``first + k · (last − first) / (size − 1)``,
    ``k = 0 … size − 1``, with ``first``/``last`` its first/last valid date; each step
    takes the linear interpolation between the valid samples around it (as
    ``np.interp(steps, dates[valid], values[valid])``). A series with a single valid
    sample becomes that constant; a series with none becomes all zeros.

    Args:
      values: ``(..., T)`` values (NaN allowed where not valid); cast to float32.
      dates: ``(..., T)`` dates in days (any origin), non-decreasing over the valid
        samples (not checked); padded entries may hold anything.
      mask: ``(..., T)`` bool, True for real samples.
      size: number of output steps ``S >= 1`` (static under jit).

    Returns:
      ``(..., S)`` float32. All three inputs are broadcast to a common shape first.
    """
    check_size(size)
    values = jnp.asarray(values, dtype=jnp.float32)
    dates = jnp.asarray(dates, dtype=jnp.float32)
    mask = jnp.asarray(mask, dtype=bool)
    if values.ndim < 1:
        raise ValueError(f"values must have a time axis, got shape {values.shape}")
    values, dates, mask = jnp.broadcast_arrays(values, dates, mask)
    valid = mask & jnp.isfinite(values) & jnp.isfinite(dates)
    plan = interpolation_plan(dates, valid, int(size))
    return apply_plan(values, valid, plan, channels_last=False)


__all__ = ["apply_plan", "check_size", "interpolation_plan", "resample_series"]
