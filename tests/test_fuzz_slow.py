"""Thorough fuzzing (``-m slow``): thousands of examples per public numeric function, with
strategies aimed at extreme floats, dates and shapes. The default suite keeps the quick
form in ``test_fuzz.py``."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pimc_jax.encode_checks import check_increasing_dates
from pimc_jax.indices import radar_indices, vegetation_indices
from pimc_jax.recurrence import recurrence_plot
from pimc_jax.resample import resample_series

pytestmark = pytest.mark.slow

THOROUGH = settings(
    max_examples=5000, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
F32_MAX = float(np.finfo(np.float32).max)
extreme32 = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from([0.0, -0.0, 1e-45, -1e-45, 1e-38, F32_MAX, -F32_MAX, 3e38, -3e38, 1e30]),
    st.floats(-2.0, 2.0, width=32),
)


@THOROUGH
@given(
    x=hnp.arrays(np.float32, st.integers(2, 8), elements=extreme32),
    normalize=st.booleans(),
    dimension=st.integers(1, 2),
)
def test_recurrence_plot_is_finite_for_finite_input(x, normalize, dimension):
    plot = np.asarray(recurrence_plot(x, normalize=normalize, dimension=dimension))
    assert np.isfinite(plot).all()
    if normalize:
        assert plot.min() >= 0 and plot.max() <= 1


@THOROUGH
@given(bands=hnp.arrays(np.float32, (3, 10), elements=extreme32))
def test_vegetation_indices_are_finite_or_nan_never_inf(bands):
    out = np.asarray(vegetation_indices(bands, band_names="pastis"))
    assert not np.isinf(out).any()


@THOROUGH
@given(
    dates=hnp.arrays(np.float64, (2, 6), elements=st.integers(-(10**6), 10**6).map(float)),
    mask=hnp.arrays(bool, (2, 6)),
)
def test_date_check_accepts_exactly_increasing_real_dates(dates, mask):
    increasing = all(np.all(np.diff(row[keep]) > 0) for row, keep in zip(dates, mask, strict=True))
    try:
        check_increasing_dates(dates, mask, "dates")
    except ValueError:
        assert not increasing
    else:
        assert increasing


@THOROUGH
@given(
    s1=hnp.arrays(
        np.float32, (3, 3), elements=st.one_of(extreme32, st.sampled_from([np.nan, np.inf]))
    ),
    db=st.booleans(),
)
def test_radar_series_are_finite_for_any_input(s1, db):
    values, valid = radar_indices(s1, "auto", db=db, return_mask=True)
    values = np.asarray(values)
    assert values.shape == (3, 5) and np.isfinite(values).all()
    # A row with a non-finite VV or VH is invalid.
    assert not np.any(np.asarray(valid) & ~np.isfinite(s1[:, :2]).all(-1))


@THOROUGH
@given(
    values=hnp.arrays(np.float32, (2, 7), elements=st.one_of(extreme32, st.just(np.nan))),
    # Whole days apart, equal days allowed (as acquisition dates are).
    steps=hnp.arrays(np.float32, (2, 7), elements=st.integers(0, 10_000).map(float)),
    mask=hnp.arrays(bool, (2, 7)),
)
def test_resampled_series_match_numpy_interp(values, steps, mask):
    """Against ``np.interp`` over each row's valid samples, in float64."""
    dates = np.cumsum(steps, axis=1, dtype=np.float32)
    out = np.asarray(resample_series(values, dates, mask, 5))
    assert out.shape == (2, 5)
    for row in range(2):
        keep = mask[row] & np.isfinite(values[row])
        if not keep.any():
            assert np.all(out[row] == 0.0)
            continue
        x, y = dates[row][keep].astype(np.float64), values[row][keep].astype(np.float64)
        if np.unique(x).size < x.size or np.abs(y).max() > 1e30:
            continue  # equal dates or overflow-sized values: only finiteness is defined
        grid = x[0] + (x[-1] - x[0]) * np.arange(5) / 4
        expected = np.interp(grid, x, y)
        scale = max(1.0, float(np.abs(y).max()))
        np.testing.assert_allclose(out[row], expected, atol=1e-4 * scale, rtol=1e-4)


def test_the_quick_fuzz_file_with_5000_examples_each():
    """``test_fuzz.py`` (indices, plots, ``encode``, the pixel loader) at 5 000 examples."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PIMC_FUZZ_EXAMPLES="5000")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "tests/test_fuzz.py",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
