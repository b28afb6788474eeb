"""Series augmentation against its definition (dropout rate, jitter bounds, relative noise,
output dtypes) and ``series_to_plots``' no-data value against NaN."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from pimc_jax.models import ModelSpec
from pimc_jax.preprocessing import (
    augment_series,
    normalize_crops,
    normalize_s1_crops,
    series_to_plots,
    view_inputs,
)


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
    # Under a day too: half a day of jitter moves the dates by up to half a day.
    _, half, _ = augment_series(jax.random.key(3), bands, dates, mask, date_jitter_days=0.5)
    delta = np.asarray(half) - dates
    assert 0.45 < np.abs(delta).max() <= 0.5


def test_outputs_are_float32_float32_bool_whatever_the_input_dtypes():
    bands, dates, mask = _batch(n=8)
    raw = (bands * 10_000).astype(np.uint16)  # digital numbers
    for options in ({}, {"date_dropout": 0.3, "date_jitter_days": 2.0, "noise_std": 0.05}):
        out = augment_series(
            jax.random.key(5), raw, dates.astype(np.int32), mask.astype(np.uint8), **options
        )
        assert [o.dtype for o in out] == [np.float32, np.float32, np.bool_], options
    got_bands, got_dates, got_mask = augment_series(
        jax.random.key(5), raw, dates.astype(np.int32), mask.astype(np.uint8)
    )
    np.testing.assert_array_equal(np.asarray(got_bands), raw.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(got_dates), dates)
    np.testing.assert_array_equal(np.asarray(got_mask), mask)


def test_series_to_plots_reads_the_nodata_value_as_nan():
    spec = ModelSpec(rp_size=8)
    bands, dates, mask = _batch(n=4, t=12, c=len(spec.band_names))
    raw = bands * spec.reflectance_scale
    marked = raw.copy()
    marked[:, 3] = 0.123  # inside the plausible reflectance range once scaled
    nan = raw.copy()
    nan[:, 3] = np.nan
    want = np.asarray(series_to_plots(spec, nan, dates, mask))
    got = np.asarray(series_to_plots(spec, marked, dates, mask, nodata=0.123))
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(np.asarray(series_to_plots(spec, marked, dates, mask)), want)


def test_noise_is_relative():
    bands, dates, mask = _batch()
    noisy, _, _ = augment_series(jax.random.key(4), bands, dates, mask, noise_std=0.05)
    ratio = np.asarray(noisy) / bands - 1
    assert ratio.mean() == pytest.approx(0.0, abs=0.002)
    assert ratio.std() == pytest.approx(0.05, rel=0.05)


def test_series_to_plots_follows_its_arguments_and_the_spec():
    spec = ModelSpec(rp_size=8)
    bands, dates, mask = _batch(n=4, t=12, c=len(spec.band_names))
    want = np.asarray(series_to_plots(spec, bands, dates, mask))
    # Bands in another order, named.
    order = np.arange(len(spec.band_names))[::-1]
    names = [spec.band_names[i] for i in order]
    got = series_to_plots(spec, bands[..., order], dates, mask, names)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)
    batch = {"bands": bands[..., order], "dates": dates, "mask": mask}
    np.testing.assert_allclose(
        np.asarray(view_inputs(spec, "s2_rp", batch, names)), want, atol=1e-6
    )
    with pytest.raises(ValueError, match="^unknown view 's3_rp'$"):
        view_inputs(spec, "s3_rp", batch)
    # Digital numbers: divided by the given scale, or else by the spec's.
    got = series_to_plots(spec, bands * 1e4, dates, mask, scale=1e4)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    got = series_to_plots(
        dataclasses.replace(spec, reflectance_scale=1e4), bands * 1e4, dates, mask
    )
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    # The spec's span: a cloudy first acquisition is on the time axis of "acquisitions" only.
    cloudy = bands.copy()
    cloudy[:, 0] = np.nan
    plots = {
        span: np.asarray(
            series_to_plots(dataclasses.replace(spec, rp_span=span), cloudy, dates, mask)
        )
        for span in ("acquisitions", "valid")
    }
    assert np.abs(plots["acquisitions"] - plots["valid"]).max() > 0.01


def test_crops_are_standardised_per_channel_and_gaps_become_the_mean():
    # (x − mean) / std per channel, float32, with a NaN (no data) read as the mean: 0.
    spec = ModelSpec(
        s1_image_bands=("VV", "VH"), s1_image_mean=(-12.0, -19.0), s1_image_std=(3.0, 4.0)
    )
    rng = np.random.default_rng(0)
    for normalize, mean, std in (
        (normalize_crops, spec.image_mean, spec.image_std),
        (normalize_s1_crops, spec.s1_image_mean, spec.s1_image_std),
    ):
        crops = rng.normal(size=(2, 3, 3, len(mean))).astype(np.float32)
        crops[0, 1, 2, 0] = np.nan
        crops[1, :, :, -1] = np.nan
        want = (crops.astype(np.float64) - np.asarray(mean)) / np.asarray(std)
        want = np.where(np.isnan(want), 0.0, want)
        got = normalize(spec, crops)
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)
