"""Radar series against NumPy formulas and hand values; S1 orbit merging, nearest dates,
and the S1 fields of a Patch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pimc_jax.data.patches import Patch
from pimc_jax.data.radar import (
    check_s1_setting,
    count_without_s1,
    merge_s1_series,
    nearest_dates,
    pixel_s1_series,
    s1_orbits,
)
from pimc_jax.indices import (
    PLAUSIBLE_BACKSCATTER_DB,
    RADAR_INDEX_NAMES,
    S1_BAND_NAMES,
    radar_indices,
    resolve_radar_indices,
)


def numpy_radar(vv_db: np.ndarray, vh_db: np.ndarray) -> np.ndarray:
    """(vv, vh, ratio, cross_ratio, rvi) from dB values, float64 NumPy."""
    vv_db, vh_db = vv_db.astype(np.float64), vh_db.astype(np.float64)
    vv, vh = 10.0 ** (vv_db / 10.0), 10.0 ** (vh_db / 10.0)
    return np.stack([vv_db, vh_db, vv_db - vh_db, vh / vv, 4 * vh / (vv + vh)], axis=-1)


def test_hand_values():
    # VV = -10 dB (0.1), VH = -20 dB (0.01): ratio 10 dB, cross ratio 0.1,
    # RVI = 4 * 0.01 / 0.11 = 0.3636...; VV = VH gives RVI 2 and ratio 0.
    s1 = np.array([[-10.0, -20.0, 10.0], [-15.0, -15.0, 0.0]], np.float32)
    values = np.asarray(radar_indices(s1))
    np.testing.assert_allclose(values[0], [-10, -20, 10, 0.1, 0.04 / 0.11], rtol=1e-5)
    np.testing.assert_allclose(values[1], [-15, -15, 0, 1, 2], rtol=1e-5, atol=1e-6)
    assert RADAR_INDEX_NAMES == ("vv", "vh", "ratio", "cross_ratio", "rvi")
    assert S1_BAND_NAMES == ("VV", "VH", "VV/VH")


def test_matches_numpy_in_db_and_linear():
    rng = np.random.default_rng(0)
    vv = rng.uniform(-25, 0, size=(4, 7))
    vh = rng.uniform(-32, -8, size=(4, 7))
    expected = numpy_radar(vv, vh)
    s1_db = np.stack([vv, vh, vv - vh], axis=-1).astype(np.float32)
    np.testing.assert_allclose(np.asarray(radar_indices(s1_db)), expected, rtol=2e-5, atol=1e-5)
    # Linear power in, same series out; the channel order comes from the names.
    linear = np.stack([10 ** (vh / 10), 10 ** (vv / 10)], axis=-1).astype(np.float32)
    values, valid = radar_indices(linear, band_names=("vh", "VV"), db=False, return_mask=True)
    np.testing.assert_allclose(np.asarray(values), expected, rtol=2e-5, atol=1e-5)
    assert valid.shape == (4, 7) and bool(jnp.all(valid))
    # A subset, in the asked order.
    rvi_vh = np.asarray(radar_indices(s1_db, ("RVI", "vh")))
    np.testing.assert_allclose(rvi_vh, expected[..., [4, 1]], rtol=2e-5, atol=1e-5)


def test_missing_and_implausible_values_are_zero_and_masked():
    low, high = PLAUSIBLE_BACKSCATTER_DB
    s1 = np.array(
        [
            [-12.0, -18.0, 6.0],  # valid
            [np.nan, -18.0, 0.0],  # VV missing: everything but vh invalid
            [-12.0, np.inf, 0.0],
            [-12.0, low - 1, 0.0],  # implausible VH
            [high + 1, -18.0, 0.0],
            [-9999.0, -18.0, 0.0],  # the nodata value (also implausible)
            [3e38, -3e38, 0.0],  # huge finite values
        ],
        np.float32,
    )
    values, valid = radar_indices(s1, return_mask=True, nodata=-9999.0)
    values = np.asarray(values)
    assert np.all(np.isfinite(values))
    np.testing.assert_array_equal(np.asarray(valid), [True] + [False] * 6)
    np.testing.assert_array_equal(values[1], [0, -18, 0, 0, 0])
    np.testing.assert_array_equal(values[2], [-12, 0, 0, 0, 0])
    np.testing.assert_array_equal(values[3], [-12, 0, 0, 0, 0])
    np.testing.assert_array_equal(values[6], [0, 0, 0, 0, 0])
    # Linear power: zero and negative values are -inf dB / undefined: missing.
    linear = np.array([[0.0, 0.01], [-0.1, 0.01], [0.1, 0.01]], np.float32)
    values, valid = radar_indices(linear, band_names=("VV", "VH"), db=False, return_mask=True)
    np.testing.assert_array_equal(np.asarray(valid), [False, False, True])
    np.testing.assert_array_equal(np.asarray(values)[0], [0, -20, 0, 0, 0])


def test_values_and_gradients_finite_for_any_finite_input():
    rng = np.random.default_rng(1)
    s1 = np.concatenate(
        [
            rng.uniform(-60, 40, size=(50, 3)),
            rng.choice([-3e38, -1e6, -50.0, 30.0, 0.0, 1e6, 3e38], size=(20, 3)),
        ]
    ).astype(np.float32)
    for db in (True, False):
        values = radar_indices(s1, db=db)
        assert np.all(np.isfinite(np.asarray(values)))
        grad = jax.grad(lambda x, db=db: jnp.sum(radar_indices(x, db=db)))(jnp.asarray(s1))
        assert np.all(np.isfinite(np.asarray(grad)))
    # Within the plausible range the cross ratio stays within 1e±8.
    extreme = np.array([[-50.0, 30.0, 0.0], [30.0, -50.0, 0.0]], np.float32)
    values = np.asarray(radar_indices(extreme, "cross_ratio"))[:, 0]
    np.testing.assert_allclose(values, [1e8, 1e-8], rtol=1e-4)


def test_jit_with_static_names():
    s1 = jnp.asarray([[-12.0, -18.0, 6.0]])
    jitted = jax.jit(lambda x: radar_indices(x, ("rvi", "ratio")))(s1)
    eager = radar_indices(s1, ("rvi", "ratio"))
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-6)


def test_resolve_radar_indices():
    assert resolve_radar_indices("auto") == RADAR_INDEX_NAMES
    assert resolve_radar_indices("auto", ("VV",)) == ("vv",)
    assert resolve_radar_indices(("RVI", "vv", "rvi")) == ("rvi", "vv")
    with pytest.raises(ValueError, match=r"'rvi' needs channels \['VH'\]"):
        resolve_radar_indices("rvi", ("VV",))
    with pytest.raises(ValueError, match="unknown radar series 'ndvi'"):
        resolve_radar_indices("ndvi")
    with pytest.raises(ValueError, match="unknown Sentinel-1 band names"):
        resolve_radar_indices("vv", ("VV", "HH"))
    with pytest.raises(ValueError, match="twice"):
        resolve_radar_indices("vv", ("VV", "vv"))
    with pytest.raises(ValueError, match="3 channels"):
        radar_indices(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="numeric"):
        radar_indices(np.array([["a", "b", "c"]]))


def test_s1_setting():
    for value, expected in [
        (None, None),
        (False, None),
        ("none", None),
        ("", None),
        (True, "both"),
        ("s1a", "S1A"),
        (" S1D ", "S1D"),
        ("Both", "both"),
    ]:
        assert check_s1_setting(value) == expected, value
    assert s1_orbits("both") == ("S1A", "S1D") and s1_orbits("s1d") == ("S1D",)
    with pytest.raises(ValueError, match="data.s1 must be 'none' or one of"):
        check_s1_setting("ascending")


def test_merge_s1_series_hand_values():
    # One pixel, channels VV, VH, VV/VH. Day 10 in both orbits: VV -10 and -20 dB
    # (0.1 and 0.01: mean 0.055 = -12.596 dB), VH -20 dB and NaN (only -20 counts).
    a = np.array([[-10.0, -20.0, 10.0], [-8.0, -14.0, 6.0]], np.float32)[:, None, None, :]
    d = np.array([[-13.0, -19.0, 6.0], [-20.0, np.nan, np.nan]], np.float32)[:, None, None, :]
    bands, dates = merge_s1_series([(a, np.array([10, 22])), (d, np.array([4, 10]))], S1_BAND_NAMES)
    np.testing.assert_array_equal(dates, [4, 10, 22])
    assert bands.dtype == np.float32 and dates.dtype == np.int32
    vv = 10 * np.log10(0.055)
    np.testing.assert_allclose(
        bands[:, 0, 0],
        [[-13, -19, 6], [vv, -20, vv + 20], [-8, -14, 6]],
        rtol=1e-6,
    )
    # Nothing shared: a reordering; empty series are skipped.
    empty = (np.zeros((0, 1, 1, 3), np.float32), np.zeros((0,), np.int32))
    bands, dates = merge_s1_series([(a, np.array([10, 22])), empty], S1_BAND_NAMES)
    np.testing.assert_array_equal(bands, a)
    with pytest.raises(ValueError, match="no Sentinel-1 date"):
        merge_s1_series([empty], S1_BAND_NAMES)
    with pytest.raises(ValueError, match="share"):
        merge_s1_series([(a, np.array([1, 2])), (a[:, :, :, :2], np.array([3, 4]))], S1_BAND_NAMES)


def test_pixel_s1_series_multilook_matches_a_loop():
    rng = np.random.default_rng(3)
    s1 = rng.uniform(-25.0, -5.0, (4, 6, 7, 3)).astype(np.float32)
    s1[..., 2] = s1[..., 0] - s1[..., 1]
    s1[1, 2, 3, :] = np.nan  # a gap inside a window
    rows, cols = np.array([0, 2, 5, 3]), np.array([0, 3, 6, 4])
    names = ("VV", "VH", "VV/VH")
    # 1: the pixels themselves, unchanged.
    np.testing.assert_array_equal(
        pixel_s1_series(s1, rows, cols, names, 1), np.swapaxes(s1[:, rows, cols], 0, 1)
    )
    got = pixel_s1_series(s1, rows, cols, names, 3)
    assert got.shape == (4, 4, 3) and got.dtype == np.float32
    for n, (r, c) in enumerate(zip(rows, cols, strict=True)):
        for t in range(4):
            for ch in (0, 1):
                values = [
                    10.0 ** (s1[t, y, x, ch] / 10.0)
                    for y in range(r - 1, r + 2)
                    for x in range(c - 1, c + 2)
                    if 0 <= y < 6 and 0 <= x < 7 and np.isfinite(s1[t, y, x, ch])
                ]
                np.testing.assert_allclose(got[n, t, ch], 10 * np.log10(np.mean(values)), rtol=1e-5)
            np.testing.assert_allclose(got[n, t, 2], got[n, t, 0] - got[n, t, 1], atol=1e-4)
    # A window with no valid value gives NaN; even or non-positive windows are refused.
    s1[:, :3, :3, :] = np.nan
    assert np.isnan(pixel_s1_series(s1, np.array([0]), np.array([0]), names, 3)).all()
    for window in (2, 0, True):
        with pytest.raises(ValueError, match="s1_multilook"):
            pixel_s1_series(s1, rows, cols, names, window)


def test_nearest_dates():
    dates = np.array([10, 16, 28])
    days = np.array([[0, 12, 13], [22, 27, 40]])
    # 13 is 3 days from 10 and from 16, 22 is 6 days from 16 and from 28: the earlier wins.
    np.testing.assert_array_equal(nearest_dates(dates, days), [[0, 0, 0], [1, 2, 2]])
    assert nearest_dates(dates, 13).shape == () and int(nearest_dates(dates, 13)) == 0
    np.testing.assert_array_equal(nearest_dates(dates, days, max_gap=4), [[-1, 0, 0], [-1, 2, -1]])
    np.testing.assert_array_equal(nearest_dates(np.array([], np.int32), [1, 2], 5), [-1, -1])


def _patch(**s1) -> Patch:
    return Patch(np.zeros((2, 4, 3, 1), np.float32), np.array([1, 2]), ("B4",), **s1)


def test_patch_s1_fields_are_checked():
    s1 = np.zeros((3, 4, 3, 2), np.float32)
    patch = _patch(s1_bands=s1, s1_dates=np.array([0, 5, 9]), s1_band_names=("VV", "VH"))
    assert patch.has_s1 and not _patch().has_s1
    empty = _patch(
        s1_bands=np.zeros((0, 4, 3, 3), np.float32), s1_dates=np.zeros(0), s1_band_names=("VV",) * 3
    )
    assert not empty.has_s1
    assert count_without_s1([patch, empty, _patch()]) == 2
    with pytest.raises(ValueError, match="without s1_dates"):
        _patch(s1_bands=s1)
    with pytest.raises(ValueError, match="without s1_bands"):
        _patch(s1_dates=np.array([0, 5, 9]))
    with pytest.raises(ValueError, match=r"\(T1, 4, 3, C1\)"):
        _patch(s1_bands=s1[:, :2], s1_dates=np.array([0, 5, 9]), s1_band_names=("VV", "VH"))
    with pytest.raises(ValueError, match="s1_dates must have shape"):
        _patch(s1_bands=s1, s1_dates=np.array([0, 5]), s1_band_names=("VV", "VH"))
    with pytest.raises(ValueError, match="strictly increasing"):
        _patch(s1_bands=s1, s1_dates=np.array([0, 5, 5]), s1_band_names=("VV", "VH"))
    with pytest.raises(ValueError, match="2 S1 channels"):
        _patch(s1_bands=s1, s1_dates=np.array([0, 5, 9]), s1_band_names=("VV",))
    with pytest.raises(ValueError, match="float dB"):
        _patch(
            s1_bands=s1.astype(np.int16), s1_dates=np.array([0, 5, 9]), s1_band_names=("VV",) * 2
        )


def test_radar_inputs_checked_and_named_in_one_line():
    # The edges a correct reader must get right, each with the message a user reads.
    with pytest.raises(ValueError, match=r"^radar band names must be a sequence of names"):
        radar_indices(np.zeros((2, 2)), band_names="VV")
    with pytest.raises(ValueError, match=r"^radar series \(\) name nothing to compute from"):
        resolve_radar_indices((), ("VV",))
    with pytest.raises(ValueError, match=r"^s1 must be a numeric \(bool, int or float\) array"):
        radar_indices(np.array([["a", "b"]], dtype=object), band_names=("VV", "VH"))
    with pytest.raises(ValueError, match=r"^radar band names must be strings, got 3"):
        resolve_radar_indices("auto", ("VV", 3))
    assert resolve_radar_indices("auto", (" vv / vh", "v h", "Vv")) == RADAR_INDEX_NAMES
    # A user's item before "auto" keeps its place; "auto" adds the rest once.
    assert resolve_radar_indices(["vh", "auto"]) == ("vh", "vv", "ratio", "cross_ratio", "rvi")


def test_radar_series_of_vv_alone_one_pixel_and_half_floats():
    vv = np.array([[-12.0], [-7.5]], np.float32)
    np.testing.assert_array_equal(radar_indices(vv, "auto", band_names=("VV",)), vv)
    np.testing.assert_array_equal(radar_indices(vv, "vh", band_names=("vh",)), vv)
    one = np.array([-10.0, -15.0], np.float32)  # one pixel's channels, a 1-D array
    got = radar_indices(one, band_names=("VV", "VH"))
    np.testing.assert_allclose(got, numpy_radar(one[:1], one[1:])[0], rtol=1e-6)
    # Half floats are read as float32 (computing in float16 would lose 3 digits).
    pixels = np.random.default_rng(0).uniform(-25, -5, size=(64, 2))
    half = pixels.astype(np.float16)
    two = {"band_names": ("VV", "VH")}
    want = radar_indices(half.astype(np.float32), **two)
    np.testing.assert_array_equal(radar_indices(half, **two), want)
    assert radar_indices(half, **two).dtype == jnp.float32


def test_nodata_inside_the_plausible_range_is_missing():
    s1 = np.array([[-20.0, -14.0], [-11.0, -20.0], [-11.0, -14.0]], np.float32)
    values, valid = radar_indices(
        s1, ("vv", "vh"), band_names=("VV", "VH"), nodata=-20.0, return_mask=True
    )
    np.testing.assert_array_equal(valid, [False, False, True])
    np.testing.assert_array_equal(values, [[0.0, -14.0], [-11.0, 0.0], [-11.0, -14.0]])
