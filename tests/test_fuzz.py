"""Property-based fuzzing (hypothesis) of indices, plots, ``encode`` and the pixel loader.

Shapes are fixed and small so that every example reuses one compilation; the models are
tiny. Properties: finite input → finite indices, plots and embeddings; no-data rows are
flagged invalid and never crash; the ``.npz`` loader loads or raises a ValueError.
"""

import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pimc_jax
from pimc_jax.data.user import load_pixel_npz
from pimc_jax.indices import INDEX_NAMES, vegetation_indices
from pimc_jax.recurrence import index_recurrence_plots

# PIMC_FUZZ_EXAMPLES raises the count (test_fuzz_slow.py runs this file with 5 000).
FUZZ = settings(
    max_examples=int(os.environ.get("PIMC_FUZZ_EXAMPLES", "25")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
N, T, C = 3, 6, 10  # PASTIS band order: B2 B3 B4 B5 B6 B7 B8 B8A B11 B12
F32_MAX = float(np.finfo(np.float32).max)

# Finite float32 values biased towards the awkward ones: no-data markers, extremes, zero.
finite32 = st.one_of(
    st.floats(-0.25, 1.25, width=32),
    st.sampled_from([0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, F32_MAX, -F32_MAX, -9999.0, 65535.0]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
any32 = st.one_of(finite32, st.sampled_from([np.nan, np.inf, -np.inf]))


def band_arrays(elements, shape=(N, T, C)):
    return hnp.arrays(np.float32, shape, elements=elements)


@FUZZ
@given(bands=band_arrays(finite32), scale=st.sampled_from([1.0, 0.5, 10_000.0]))
def test_finite_bands_give_finite_indices_and_gradients(bands, scale):
    values, valid = vegetation_indices(bands, "pastis", INDEX_NAMES, scale=scale, return_mask=True)
    values = np.asarray(values)
    assert values.shape == (N, T, len(INDEX_NAMES)) and values.dtype == np.float32
    assert np.all(np.isfinite(values))
    # Samples whose bands are all implausible (no-data markers) are invalid and zero.
    with np.errstate(over="ignore"):
        implausible = np.all(np.abs(bands.astype(np.float64) / scale) > 2.0, axis=-1)
    assert np.all(values[implausible] == 0.0) and not np.any(np.asarray(valid)[implausible])


@FUZZ
@given(bands=band_arrays(any32))
def test_missing_bands_are_masked_never_nan(bands):
    values, valid = vegetation_indices(bands, "pastis", ("ndvi", "evi"), return_mask=True)
    assert np.all(np.isfinite(np.asarray(values)))
    # A sample reading a non-finite band (B2, B4 or B8) is invalid.
    read = bands[..., [0, 2, 6]]
    assert not np.any(np.asarray(valid) & ~np.all(np.isfinite(read), axis=-1))


@FUZZ
@given(
    bands=band_arrays(any32),
    dates=hnp.arrays(np.float32, (N, T), elements=st.floats(-1048576.0, 1048576.0, width=32)),
    mask=hnp.arrays(np.bool_, (N, T)),
    extreme_dates=st.booleans(),
)
def test_plots_are_finite_for_any_input(bands, dates, mask, extreme_dates):
    dates = np.sort(dates, axis=1)
    if extreme_dates:
        dates[:, 0], dates[:, -1] = -F32_MAX, F32_MAX
    plots = index_recurrence_plots(
        bands,
        dates,
        mask,
        band_names="pastis",
        size=8,
        indices=("ndvi", "evi", "ndwi"),
        channels=("distance", "difference", "level"),
    )
    plots = np.asarray(plots)
    assert plots.shape == (N, 8, 8, 9)
    assert np.all(np.isfinite(plots))


@pytest.fixture(scope="module")
def params(tiny_params):
    return tiny_params


@FUZZ
@given(
    bands=band_arrays(any32, (4, T, C)),
    nan_rows=hnp.arrays(np.bool_, (4,)),
    nodata=st.sampled_from([None, -9999.0, F32_MAX]),
    scale=st.sampled_from([None, 1e-4, 1.0]),
    iso_dates=st.booleans(),
)
def test_encode_is_finite_and_flags_rows_without_data(
    params, bands, nan_rows, nodata, scale, iso_dates
):
    fill = np.nan if nodata is None else nodata
    bands[nan_rows] = fill
    day = np.arange(T) * 10
    dates = [str(np.datetime64("2019-04-01") + d) for d in day] if iso_dates else day
    out = pimc_jax.encode(
        params,
        {"bands": bands, "dates": dates, "band_names": "pastis"},
        scale=scale,
        nodata=nodata,
    )
    assert out["rp"].shape == (4, 12) and out["valid"].shape == (4,)
    assert out["valid"].dtype == np.bool_
    assert np.all(np.isfinite(out["rp"])) and np.all(np.isfinite(out["rp_features"]))
    assert not np.any(out["valid"][nan_rows])
    valid = out["valid"]
    # Unit norm, or zero when the plots are all zero (a constant zero-index series, or no
    # usable date) and the untrained head has no bias to move them.
    norms = np.linalg.norm(out["rp"], axis=1)
    assert np.all((np.abs(norms - 1.0) < 1e-4) | (norms < 1e-6))
    # Pixels without a usable date all get one and the same embedding.
    if np.sum(~valid) > 1:
        np.testing.assert_allclose(
            out["rp"][~valid], out["rp"][~valid][:1].repeat(np.sum(~valid), 0), atol=1e-6
        )


@FUZZ
@given(
    n=st.integers(0, 3),
    t=st.integers(0, 4),
    c=st.integers(0, 5),
    dtype=st.sampled_from(["float32", "float64", "int16", "uint16", "bool", "U3", "complex64"]),
    names=st.lists(st.sampled_from(["B2", "B4", "B8", "NDVI", "red", "x", "B8", ""]), max_size=5),
    dates=st.one_of(
        hnp.arrays(np.float64, st.integers(0, 5), elements=st.floats(allow_infinity=False)),
        hnp.arrays(np.int64, st.integers(0, 5), elements=st.integers(-(2**40), 2**40)),
        st.lists(st.sampled_from(["2019-04-01", "2019-04-11", "2019-13-01", "x"]), max_size=5),
    ),
    extra=st.sampled_from([{}, {"scale": 1e-4}, {"scale": "x"}, {"labels": [0, 1, 2]}]),
)
def test_loader_loads_or_raises_value_error(n, t, c, dtype, names, dates, extra):
    bands = np.ones((n, t, c)).astype(dtype)
    arrays = {
        "bands": bands,
        "band_names": np.asarray(names, dtype=str),
        "dates": np.asarray(dates),
    }
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "pixels.npz")
        np.savez(path, **arrays)
        try:
            series = load_pixel_npz(path)
        except ValueError as err:
            assert str(err) and "\n" not in str(err)
            return
    assert series.bands.shape == (n, t, c) and series.bands.dtype == np.float32
    assert series.dates.shape == (n, t) and np.all(np.isfinite(series.dates[series.mask]))
