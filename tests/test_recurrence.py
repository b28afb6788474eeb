"""Recurrence plots against pyts, resampling against np.interp, the index→RP pipeline
against a NumPy + pyts pipeline."""

from __future__ import annotations

import functools
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pyts

from pimc_jax.recurrence import (
    index_recurrence_plots,
    recurrence_plot,
    resample_series,
    series_recurrence_plots,
)
from pimc_jax.resample import check_size

ATOL = 1e-5


def _load_pyts_recurrence_plot() -> type:
    """pyts's RecurrencePlot, loaded from its own module file.

    ``import pyts.image`` also builds the GAF/MTF transformers, whose numba compilation
    takes ~20 s at import; the recurrence module on its own loads in about a second.
    """
    path = pathlib.Path(pyts.__file__).parent / "image" / "_recurrence.py"
    if not path.exists():  # another pyts layout: take the public import
        from pyts.image import RecurrencePlot

        return RecurrencePlot
    spec = importlib.util.spec_from_file_location("_pyts_recurrence_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RecurrencePlot


RecurrencePlot = _load_pyts_recurrence_plot()


def pyts_plots(x: np.ndarray, **kwargs) -> np.ndarray:
    """pyts on a (n, T) float32 batch, computed in float64 on the same values."""
    return RecurrencePlot(**kwargs).transform(np.asarray(x, np.float64))


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, size=(4, 23)).astype(np.float32)


@pytest.mark.parametrize("threshold", [None, "point", "distance", 0.4])
@pytest.mark.parametrize(
    ("dimension", "time_delay"), [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
)
def test_matches_pyts(series, threshold, dimension, time_delay):
    options = dict(dimension=dimension, time_delay=time_delay, threshold=threshold)
    expected = pyts_plots(series, percentage=20, **options)
    got = np.asarray(recurrence_plot(series, percentage=20, **options))
    size = series.shape[1] - (dimension - 1) * time_delay
    assert got.shape == (4, size, size) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("percentage", [0, 10, 33.3, 50, 100])
def test_point_threshold_with_ties_matches_pyts(percentage):
    # Few distinct values: many equal distances sit right at the percentile.
    x = np.random.default_rng(1).integers(0, 4, size=(6, 11)).astype(np.float32) / 4
    expected = pyts_plots(x, threshold="point", percentage=percentage)
    got = np.asarray(recurrence_plot(x, threshold="point", percentage=percentage))
    np.testing.assert_array_equal(got, expected)


# Distances of 11 distinct values: each off-diagonal one occurs twice, so order statistic
# k first differs from k - 1 at k = 11 + 2j. The percentile's position (n - 1)·p/100 with
# n = 121 is set to 15 exactly (an integer, on a new value) or just past 12, 62 and 102
# (where the threshold first rises above a value), so a position off by a fraction of a
# step lands on the other side.
@pytest.mark.parametrize("position", [15.0, 12.05, 62.05, 102.05])
def test_point_threshold_at_order_statistic_boundaries_matches_pyts(position):
    percentage = 12.5 if position == 15.0 else position * 100 / 120
    x = np.random.default_rng(2).uniform(-1, 1, size=(3, 11)).astype(np.float32)
    expected = pyts_plots(x, threshold="point", percentage=percentage)
    got = np.asarray(recurrence_plot(x, threshold="point", percentage=percentage))
    np.testing.assert_array_equal(got, expected)


def test_fractional_embedding_matches_pyts(series):
    expected = pyts_plots(series, dimension=0.1, time_delay=0.05)  # m = 3, τ = 2 for T = 23
    got = np.asarray(recurrence_plot(series, dimension=0.1, time_delay=0.05))
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("threshold", [None, "point", "distance", 0.4])
def test_channels_last_and_leading_shape(threshold):
    x = np.random.default_rng(2).uniform(-1, 1, size=(2, 3, 17, 2)).astype(np.float32)
    got = np.asarray(recurrence_plot(x, dimension=2, threshold=threshold, channels_last=True))
    assert got.shape == (2, 3, 16, 16, 2)
    for channel in range(2):
        expected = pyts_plots(x[..., channel].reshape(6, 17), dimension=2, threshold=threshold)
        np.testing.assert_allclose(
            got[..., channel].reshape(6, 16, 16), expected, rtol=0, atol=ATOL
        )
    # The channels-first call on the moved axis gives the same plots.
    first = recurrence_plot(np.moveaxis(x, -1, -2), dimension=2, threshold=threshold)
    np.testing.assert_allclose(np.moveaxis(np.asarray(first), 2, -1), got, atol=ATOL)


@pytest.mark.parametrize("dimension", [1, 2])
def test_normalize_scales_by_max(series, dimension):
    x = series.copy()
    x[1] = 0.3  # constant series: all-zero plot, no division by zero
    expected = pyts_plots(x, dimension=dimension)
    peak = expected.max(axis=(1, 2), keepdims=True)
    expected = np.divide(expected, peak, out=np.zeros_like(expected), where=peak > 0)
    got = np.asarray(recurrence_plot(x, dimension=dimension, normalize=True))
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    assert got[1].max() == 0 and np.isclose(got[0].max(), 1)


def test_vmap_and_jit(series):
    options = dict(dimension=2, time_delay=2, threshold="distance", percentage=30)
    expected = pyts_plots(series, **options)
    per_series = jax.vmap(functools.partial(recurrence_plot, **options))(series)
    np.testing.assert_allclose(np.asarray(per_series), expected, atol=ATOL)
    inside_step = jax.jit(lambda x: recurrence_plot(x, **options))
    np.testing.assert_allclose(np.asarray(inside_step(series)), expected, atol=ATOL)
    jitted = jax.jit(recurrence_plot, static_argnames=tuple(options))
    np.testing.assert_allclose(np.asarray(jitted(series, **options)), expected, atol=ATOL)
    point = jax.vmap(functools.partial(recurrence_plot, threshold="point"))(series)
    np.testing.assert_array_equal(np.asarray(point), pyts_plots(series, threshold="point"))


def test_gradient_is_finite(series):
    def total(x):
        return recurrence_plot(x, dimension=2, normalize=True).sum()

    grad = np.asarray(jax.jit(jax.grad(total))(jnp.asarray(series)))
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    # A constant series (an all-zero plot, nothing to normalise by), with m = 1 and m = 2.
    for dimension in (1, 2):
        flat = jax.grad(
            lambda x, m=dimension: recurrence_plot(x, dimension=m, normalize=True).sum()
        )
        assert np.isfinite(np.asarray(flat(jnp.full((2, 9), 0.3)))).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dimension=30), "^dimension as an integer must be in"),
        (dict(dimension=0), "^dimension as an integer must be in"),
        (dict(time_delay=1.5), r"^time_delay as a float must be in \(0, 1\]"),
        (dict(dimension=0.0), r"^dimension as a float must be in \(0, 1\]"),
        (dict(dimension=True), "^dimension must be an int or a float, got True"),
        (dict(time_delay="2"), "^time_delay must be an int or a float"),
        (dict(dimension=13, time_delay=2), "no trajectory"),
        (dict(threshold="points"), "threshold"),
        (dict(threshold=-1.0), "threshold"),
        (dict(threshold="point", percentage=120), "percentage"),
        (dict(threshold=True), "^threshold must be None, 'point', 'distance' or a positive"),
        (dict(threshold=1j), "^threshold must be None, 'point', 'distance' or a positive"),
        (dict(threshold=0.0), "^a numeric threshold must be > 0"),
        (dict(percentage=True), r"^percentage must be a number in \[0, 100\]"),
        (dict(percentage="10"), r"^percentage must be a number in \[0, 100\]"),
        (dict(threshold="distance", percentage=100.5), r"^percentage must be in \[0, 100\]"),
    ],
)
def test_bad_options_raise(series, kwargs, message):
    with pytest.raises(ValueError, match=message):
        recurrence_plot(series, **kwargs)


@pytest.mark.parametrize("dimension", [1, 2])
def test_series_of_very_different_magnitudes_match_pyts(dimension):
    """Series beyond ±2^60 are rescaled by a power of two of their own, so squares do not
    overflow float32 and a tiny series in the same batch keeps its precision."""
    rng = np.random.default_rng(13)
    unit = rng.uniform(-1, 1, size=(3, 12))
    x = (unit * np.array([[1e25], [1e-15], [1.0]])).astype(np.float32)
    got = np.asarray(recurrence_plot(x, dimension=dimension))
    want = pyts_plots(x, dimension=dimension)
    assert np.all(np.isfinite(got))
    for row in range(3):  # each plot relative to its own scale
        np.testing.assert_allclose(got[row], want[row], rtol=1e-5, atol=1e-6 * want[row].max())
    np.testing.assert_allclose(  # a numeric threshold in the series' own units
        np.asarray(recurrence_plot(x[:1], dimension=dimension, threshold=5e24)),
        pyts_plots(x[:1], dimension=dimension, threshold=5e24),
    )


def test_distances_saturate_at_float32_max_and_a_numeric_threshold_is_strict():
    top = float(np.finfo(np.float32).max)  # distances beyond float32 saturate there
    extreme = np.asarray(recurrence_plot(np.array([[-0.9 * top, 0.9 * top]], np.float32)))
    np.testing.assert_array_equal(extreme[0], [[0.0, top], [top, 0.0]])
    exact = np.array([[0.0, 0.5, 1.0, 0.25]], np.float32)  # distances equal to the threshold
    np.testing.assert_array_equal(
        np.asarray(recurrence_plot(exact, threshold=0.5)), pyts_plots(exact, threshold=0.5)
    )


def test_channels_last_needs_a_channel_axis_and_integers_give_float_plots(series):
    with pytest.raises(ValueError, match=r"^x must have rank >= 2 \(time, channel last\)"):
        recurrence_plot(series[0], channels_last=True)
    with pytest.raises(ValueError, match=r"^x must have rank >= 1 \(time last\)"):
        recurrence_plot(series[0, 0])
    # m = T leaves exactly one trajectory: a 1 × 1 plot, as in pyts.
    np.testing.assert_array_equal(
        np.asarray(recurrence_plot(series, dimension=23)), pyts_plots(series, dimension=23)
    )
    np.testing.assert_array_equal(  # the float 1.0: the whole series, ⌈1.0 · T⌉ = T
        np.asarray(recurrence_plot(series, dimension=1.0)), pyts_plots(series, dimension=1.0)
    )
    counts = np.random.default_rng(9).integers(0, 50, size=(3, 10)).astype(np.int32)
    got = recurrence_plot(counts)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got), pyts_plots(counts))
    half = series.astype(np.float16)  # computed in float32, not in the input's precision
    got = recurrence_plot(half)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), pyts_plots(half), rtol=0, atol=ATOL)


def _irregular_batch(rng: np.random.Generator, n: int, t: int):
    """Sorted dates (large origin, padding repeats the last date) and varied masks."""
    dates = 18_000 + np.sort(rng.uniform(0, 365, size=(n, t)), axis=1)
    mask = rng.random((n, t)) < 0.7
    mask[0] = True  # everything valid
    mask[1] = False  # nothing valid
    mask[2] = False
    mask[2, 4] = True  # a single valid sample
    mask[3, -5:] = False  # padded tail: repeated last date
    dates[3, -5:] = dates[3, -6]
    return dates.astype(np.float32), mask


def numpy_resample(values, dates, mask, size):
    if not mask.any():
        return np.zeros(size)
    d = dates[mask].astype(np.float64)
    return np.interp(np.linspace(d[0], d[-1], size), d, values[mask].astype(np.float64))


@pytest.mark.parametrize("size", [13, 2])  # 2: the first and the last date only
def test_resample_matches_np_interp(size):
    rng = np.random.default_rng(3)
    n, t = 6, 19
    dates, mask = _irregular_batch(rng, n, t)
    values = rng.uniform(-1, 1, size=(n, t)).astype(np.float32)
    values[~mask] = np.nan  # invalid samples may hold anything
    got = np.asarray(resample_series(values, dates, mask, size))
    assert got.shape == (n, size) and np.isfinite(got).all()
    for i in range(n):
        np.testing.assert_allclose(
            got[i], numpy_resample(values[i], dates[i], mask[i], size), atol=ATOL
        )
    np.testing.assert_array_equal(got[1], 0.0)
    np.testing.assert_allclose(got[2], values[2, 4])


def test_resample_of_dates_less_than_a_day_apart_interpolates():
    # Hours, not days (resample_series takes any float dates): every gap is below 1.
    dates = np.array([[0.0, 0.1, 0.35, 0.4, 0.9]], np.float32)
    values = np.array([[1.0, -2.0, 0.5, 3.0, -1.0]], np.float32)
    mask = np.ones_like(dates, bool)
    got = np.asarray(resample_series(values, dates, mask, 7))
    np.testing.assert_allclose(got[0], numpy_resample(values[0], dates[0], mask[0], 7), atol=1e-5)


def test_resample_upsamples_and_broadcasts():
    rng = np.random.default_rng(4)
    dates = np.array([0.0, 3.0, 10.0, 11.0, 30.0], np.float32)
    mask = np.array([True, True, False, True, True])
    values = rng.uniform(size=(2, 3, 5)).astype(np.float32)
    got = np.asarray(resample_series(values, dates, mask, 40))
    assert got.shape == (2, 3, 40)
    for index in np.ndindex(2, 3):
        expected = numpy_resample(values[index], dates, mask, 40)
        np.testing.assert_allclose(got[index], expected, atol=ATOL)


def numpy_index_plots(bands, dates, mask, size, normalize=True, **rp_options):
    """NumPy formulas (PASTIS order) + np.interp + pyts, one pixel at a time."""
    blue, red, nir = bands[..., 0], bands[..., 2], bands[..., 6]
    with np.errstate(invalid="ignore", divide="ignore"):
        indices = np.stack(
            [
                (nir - red) / (nir + red),
                2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1),
                1.5 * (nir - red) / (nir + red + 0.5),
            ],
            axis=-1,
        )
    keep = mask & np.isfinite(indices).all(axis=-1)
    plots = []
    for n in range(bands.shape[0]):
        channels = []
        for k in range(3):
            resampled = numpy_resample(indices[n, :, k], dates[n], keep[n], size)
            plot = pyts_plots(resampled[None], **rp_options)[0]
            if normalize and rp_options.get("threshold") is None and plot.max() > 0:
                plot = plot / plot.max()
            channels.append(plot)
        plots.append(np.stack(channels, axis=-1))
    return np.stack(plots)


@pytest.mark.parametrize(
    "rp_options",
    [
        dict(),
        dict(dimension=2, time_delay=2),
        dict(dimension=2),  # the default τ = 1
        dict(threshold="distance", percentage=25),
        dict(threshold="distance"),  # the default percentage 10
        dict(normalize=False),
    ],
)
def test_index_recurrence_plots_match_numpy_pipeline(rp_options):
    rng = np.random.default_rng(5)
    n, t, size = 5, 21, 16
    dates, mask = _irregular_batch(rng, n, t)
    bands = rng.uniform(0.02, 0.5, size=(n, t, 10)).astype(np.float32)
    bands[~mask] = np.nan  # padding
    bands[0, 3, 6] = np.nan  # a cloud-masked NIR value
    bands[4, 7] = 0.0  # NIR = R = 0: NDVI undefined → sample dropped
    expected = numpy_index_plots(bands, dates, mask, size, **rp_options)

    got = index_recurrence_plots(bands, dates, mask, band_names="pastis", size=size, **rp_options)
    assert got.shape == expected.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=ATOL)
    np.testing.assert_array_equal(np.asarray(got[1]), 0.0)  # no valid sample
    if not rp_options:  # NDVI alone: the first channel (no sample here has NDVI alone valid)
        ndvi = index_recurrence_plots(
            bands, dates, mask, band_names="pastis", size=size, indices=("ndvi",)
        )
        np.testing.assert_allclose(np.asarray(ndvi), expected[..., :1], rtol=0, atol=ATOL)


def test_index_recurrence_plots_take_digital_numbers_integer_days_and_an_integer_mask():
    """uint16 DN with ``scale``, int32 days and a uint8 mask (any non-zero value is valid)."""
    rng = np.random.default_rng(15)
    n, t, size = 4, 17, 12
    dates, mask = _irregular_batch(rng, n, t)
    dates = np.floor(dates)  # whole days
    numbers = rng.integers(200, 5000, size=(n, t, 10)).astype(np.uint16)
    # DN 0 marks a missing blue value: EVI is undefined there, so the sample is dropped,
    # although 0 is a plausible reflectance and NDVI and SAVI would be valid.
    numbers[0, [2, 9], 0] = 0
    kept = mask.copy()
    kept[0, [2, 9]] = False
    expected = numpy_index_plots(numbers / 10_000.0, dates, kept, size)
    got = index_recurrence_plots(
        numbers,
        dates.astype(np.int32),
        mask * rng.choice(np.array([2, 128, 255], np.uint8), size=mask.shape),
        band_names="pastis",
        size=size,
        scale=10_000,
        nodata=0,
    )
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=ATOL)


def test_index_recurrence_plots_in_jit_and_vmap():
    rng = np.random.default_rng(6)
    dates, mask = _irregular_batch(rng, 4, 9)
    bands = rng.uniform(0.02, 0.5, size=(4, 9, 10)).astype(np.float32)
    expected = numpy_index_plots(bands, dates, mask, 7)
    names = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    step = jax.jit(lambda b, d, m: index_recurrence_plots(b, d, m, band_names=list(names), size=7))
    np.testing.assert_allclose(np.asarray(step(bands, dates, mask)), expected, atol=ATOL)
    per_pixel = jax.vmap(functools.partial(index_recurrence_plots, band_names=names, size=7))
    np.testing.assert_allclose(np.asarray(per_pixel(bands, dates, mask)), expected, atol=ATOL)


def test_index_recurrence_plots_shape_errors():
    bands = np.zeros((2, 5, 10), np.float32)
    with pytest.raises(ValueError, match="mask"):
        index_recurrence_plots(
            bands, np.zeros((2, 5)), np.ones((2, 4), bool), band_names="pastis", size=4
        )
    with pytest.raises(ValueError, match="size"):
        index_recurrence_plots(
            bands, np.zeros((2, 5)), np.ones((2, 5), bool), band_names="pastis", size=0
        )
    with pytest.raises(ValueError, match=r"^bands must be \(\.\.\., T, C\)"):  # 1-D bands
        index_recurrence_plots(
            bands[0, 0], np.zeros(()), np.ones((), bool), band_names="pastis", size=4
        )


def test_plot_channels_difference_and_level_match_numpy():
    rng = np.random.default_rng(8)
    n, t, size = 5, 11, 9
    dates, mask = _irregular_batch(rng, n, t)
    bands = rng.uniform(0.02, 0.5, size=(n, t, 10)).astype(np.float32)
    distance = numpy_index_plots(bands, dates, mask, size)  # normalised |x_i - x_j|
    # The resampled index series, written out with np.interp.
    blue, red, nir = (bands[..., p].astype(np.float64) for p in (0, 2, 6))  # PASTIS B2, B4, B8
    indices = np.stack(
        [
            (nir - red) / (nir + red),
            2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1),
            1.5 * (nir - red) / (nir + red + 0.5),
        ],
        axis=-1,
    )
    series = np.stack(
        [
            np.stack([numpy_resample(indices[i, :, k], dates[i], mask[i], size) for k in range(3)])
            for i in range(n)
        ]
    ).transpose(0, 2, 1)  # (n, S, K)
    difference = series[:, None, :, :] - series[:, :, None, :]  # [i, j] = x_j - x_i
    level = (series[:, :, None, :] + series[:, None, :, :]) / 2
    got = index_recurrence_plots(
        bands,
        dates,
        mask,
        band_names="pastis",
        size=size,
        channels=("level", "distance", "difference"),
    )
    assert got.shape == (n, size, size, 9)
    np.testing.assert_allclose(np.asarray(got[..., 0:3]), level, atol=ATOL)
    np.testing.assert_allclose(np.asarray(got[..., 3:6]), distance, atol=ATOL)
    np.testing.assert_allclose(np.asarray(got[..., 6:9]), difference, atol=ATOL)
    # Level's diagonal is the series itself; a flat series has a zero distance plot but not
    # a zero level plot (what the paper's plot cannot tell apart).
    np.testing.assert_allclose(
        np.diagonal(np.asarray(got[..., 0]), axis1=1, axis2=2), series[..., 0], atol=ATOL
    )


def test_series_plot_defaults_are_those_of_index_plots():
    """Defaults: pyts's embedding (m = τ = 1) and percentage 10, each plot over its maximum."""
    series = np.random.default_rng(4).uniform(-1, 1, size=(3, 13, 2)).astype(np.float32)
    flat = series.transpose(0, 2, 1).reshape(-1, 13)  # (3·2, 13), one row per plot
    reference = pyts_plots(flat)
    reference /= reference.max(axis=(1, 2), keepdims=True)
    got = np.asarray(series_recurrence_plots(series, ("distance",)))
    assert got.shape == (3, 13, 13, 2)
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2).reshape(-1, 13, 13), reference, atol=ATOL)
    points = np.asarray(series_recurrence_plots(series, ("distance",), threshold="point"))
    np.testing.assert_array_equal(
        points.transpose(0, 3, 1, 2).reshape(-1, 13, 13), pyts_plots(flat, threshold="point")
    )
    for name in ("dimension", "time_delay"):  # checked before any plot kind is built
        with pytest.raises(ValueError, match=f"^{name} as an integer"):
            series_recurrence_plots(series, ("level",), **{name: 0})
    embedded = np.asarray(series_recurrence_plots(series, ("distance",), dimension=2))
    reference = pyts_plots(flat, dimension=2)  # τ = 1: 12 states
    reference /= reference.max(axis=(1, 2), keepdims=True)
    assert embedded.shape == (3, 12, 12, 2)
    np.testing.assert_allclose(
        embedded.transpose(0, 3, 1, 2).reshape(-1, 12, 12), reference, atol=ATOL
    )


def test_plot_channels_follow_the_embedding_size():
    bands = np.random.default_rng(9).uniform(0.02, 0.5, (2, 8, 10)).astype(np.float32)
    dates, mask = np.tile(np.arange(8.0), (2, 1)), np.ones((2, 8), bool)
    got = index_recurrence_plots(
        bands,
        dates,
        mask,
        band_names="pastis",
        size=8,
        dimension=2,
        time_delay=2,
        channels=("distance", "level"),
    )
    assert got.shape == (2, 6, 6, 6)


@pytest.mark.parametrize("channels", [(), ("distance", "distance"), ("slope",)])
def test_bad_plot_channels_raise(channels):
    with pytest.raises(ValueError, match="plot channels"):
        index_recurrence_plots(
            np.zeros((1, 4, 10), np.float32),
            np.zeros((1, 4)),
            np.ones((1, 4), bool),
            band_names="pastis",
            size=4,
            channels=channels,
        )


def test_index_plots_are_finite_with_no_data_markers():
    # A float32-max no-data value used to make inf/NaN plots; now it is a missing sample.
    rng = np.random.default_rng(11)
    bands = rng.uniform(0.02, 0.5, (3, 9, 10)).astype(np.float32)
    marked = bands.copy()
    marked[0, 4] = np.finfo(np.float32).max
    marked[1, :] = np.finfo(np.float32).max  # no usable date at all → zeros
    dates = np.tile(np.arange(9, dtype=np.float32) * 10, (3, 1))
    mask = np.ones((3, 9), bool)
    kwargs = dict(band_names="pastis", size=8, channels=("distance", "difference", "level"))
    plots = np.asarray(index_recurrence_plots(marked, dates, mask, **kwargs))
    assert np.all(np.isfinite(plots))
    assert np.all(plots[1] == 0.0)
    # The marked sample is treated exactly like a masked-out one, as is `nodata`.
    dropped = mask.copy()
    dropped[0, 4] = False
    expected = np.asarray(index_recurrence_plots(bands, dates, dropped, **kwargs))
    np.testing.assert_allclose(plots[0], expected[0], atol=1e-6)
    nodata = np.where(marked == np.finfo(np.float32).max, -9999.0, marked)
    again = np.asarray(index_recurrence_plots(nodata, dates, mask, nodata=-9999.0, **kwargs))
    np.testing.assert_allclose(again, plots, atol=1e-6)


@pytest.mark.parametrize(
    "which, value",
    [
        ("bands", np.full((2, 4, 10), "0.1", dtype=object)),
        ("dates", np.array([["2019-04-01"] * 4] * 2)),
        ("dates", np.array(["2019-04-01"] * 4, dtype="datetime64[D]")[None].repeat(2, 0)),
        ("mask", np.full((2, 4), None, dtype=object)),
    ],
)
def test_index_plots_reject_non_numeric_arrays_with_a_value_error(which, value):
    inputs = {
        "bands": np.full((2, 4, 10), 0.2, np.float32),
        "dates": np.zeros((2, 4), np.float32),
        "mask": np.ones((2, 4), bool),
    }
    inputs[which] = value
    with pytest.raises(ValueError, match=f"^{which} must be a numeric"):
        index_recurrence_plots(**inputs, band_names="pastis", size=4)


def test_acquisition_span_puts_every_pixel_on_its_calendar():
    rng = np.random.default_rng(11)
    bands = rng.uniform(0.05, 0.45, (3, 12, 10)).astype(np.float32)
    bands[0, :3] = np.nan  # cloudy start
    bands[1, -4:] = np.nan  # cloudy end
    bands[2, [2, 5, 6]] = np.nan  # gaps inside
    dates = np.tile(np.sort(rng.uniform(0, 360, 12)), (3, 1)).astype(np.float32)
    mask = np.ones((3, 12), bool)
    mask[2, -1] = False  # padding: not an acquisition
    size = 16
    got = np.asarray(
        index_recurrence_plots(
            bands,
            dates,
            mask,
            band_names="pastis",
            size=size,
            indices=("ndvi",),
            channels=("level",),
            span="acquisitions",
        )
    )
    nir, red = bands[..., 6].astype(np.float64), bands[..., 2].astype(np.float64)
    ndvi = (nir - red) / (nir + red)
    for n in range(3):
        acquired = dates[n][mask[n]]
        grid = np.linspace(acquired.min(), acquired.max(), size)
        ok = mask[n] & np.isfinite(ndvi[n])
        # np.interp holds the end values outside the counted dates, as the plots do.
        expected = np.interp(grid, dates[n][ok], ndvi[n][ok])
        np.testing.assert_allclose(np.diagonal(got[n, ..., 0]), expected, rtol=1e-4, atol=1e-5)
    # "valid" (the paper's) stretches pixel 0's counted dates over the whole axis instead.
    valid_span = np.asarray(
        index_recurrence_plots(
            bands,
            dates,
            mask,
            band_names="pastis",
            size=size,
            indices=("ndvi",),
            channels=("level",),
        )
    )
    grid = np.linspace(dates[0, 3], dates[0, -1], size)
    np.testing.assert_allclose(
        np.diagonal(valid_span[0, ..., 0]),
        np.interp(grid, dates[0, 3:], ndvi[0, 3:]),
        rtol=1e-4,
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="plot span"):
        index_recurrence_plots(bands, dates, mask, band_names="pastis", size=8, span="calendar")


def test_check_size_accepts_positive_ints_only():
    for size in (1, 2, np.int64(7)):
        check_size(size)
    for size in (0, -3, True, 2.5, "4"):
        with pytest.raises(ValueError, match="size must be a positive int"):
            check_size(size)
