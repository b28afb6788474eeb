"""Series augmentation against its definition: dropout rate, jitter bounds, relative noise."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from pimc_jax.preprocessing import augment_series


def _batch(n: int = 400, t: int = 12, c: int = 4):
    rng = np.random.default_rng(0)
    bands = rng.uniform(0.05, 0.5, (n, t, c)).astype(np.float32)
    dates = np.tile(np.arange(t, dtype=np.float32) * 30.0, (n, 1))
    mask = np.ones((n, t), bool)
    mask[:, -2:] = False  # padding stays padding
    return bands, dates, mask


def test_identity_without_options():
    bands, dates, mask = _batch()
    out = augment_series(jax.random.key(0), bands, dates, mask)
    for got, want in zip(out, (bands, dates, mask), strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)


def test_date_dropout_rate_and_floor():
    bands, dates, mask = _batch()
    _, _, kept = augment_series(jax.random.key(1), bands, dates, mask, date_dropout=0.3)
    kept = np.asarray(kept)
    assert not kept[:, -2:].any()  # never revives padding
    assert kept.sum(axis=1).min() >= 2  # no series is emptied
    # Each of the 10 real dates is dropped when its uniform draw is < 0.3, unless it is one
    # of the series' two largest draws, which are < 0.3 only with probability
    # P(at most one of 10 draws >= 0.3) ≈ 1.4e-4: the rate is 0.3 up to that.
    assert abs(1 - kept[:, :10].mean() - 0.3) < 0.02
    _, _, all_dropped = augment_series(jax.random.key(2), bands, dates, mask, date_dropout=1.0)
    np.testing.assert_array_equal(np.asarray(all_dropped).sum(axis=1), 2)


def test_date_jitter_is_bounded_and_keyed():
    bands, dates, mask = _batch()
    _, shifted, _ = augment_series(jax.random.key(3), bands, dates, mask, date_jitter_days=5.0)
    delta = np.asarray(shifted) - dates
    assert np.abs(delta).max() <= 5.0 and np.abs(delta).max() > 4.5 and delta.std() > 2.0
    _, again, _ = augment_series(jax.random.key(3), bands, dates, mask, date_jitter_days=5.0)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(shifted))


def test_noise_is_relative():
    bands, dates, mask = _batch()
    noisy, _, _ = augment_series(jax.random.key(4), bands, dates, mask, noise_std=0.05)
    ratio = np.asarray(noisy) / bands - 1
    assert ratio.mean() == pytest.approx(0.0, abs=0.002)
    assert ratio.std() == pytest.approx(0.05, rel=0.05)
