"""Thorough fuzzing (``-m slow``): thousands of examples per public numeric function, with
strategies aimed at extreme floats, dates and shapes. The default suite keeps the quick
form in ``test_fuzz.py``."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pimc_jax.encode_checks import check_increasing_dates
from pimc_jax.indices import vegetation_indices
from pimc_jax.recurrence import recurrence_plot

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
