"""Vegetation indices against NumPy evaluations of the formulas, and their masking."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pimc_jax.indices import (
    BAND_TABLES,
    INDEX_NAMES,
    PLAUSIBLE_REFLECTANCE,
    band_index,
    canonical_band_name,
    check_numeric,
    resolve_band_names,
    resolve_image_bands,
    resolve_indices,
    vegetation_indices,
)

# Positions of (blue, red, nir) in each table, written out by hand.
TABLE_POSITIONS = {"pastis": (0, 2, 6), "eurosat": (1, 3, 7), "modis": (0, 1, 2)}


def numpy_indices(blue: np.ndarray, red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    blue, red, nir = (a.astype(np.float64) for a in (blue, red, nir))
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
        evi = 2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1)
        savi = 1.5 * (nir - red) / (nir + red + 0.5)
    return np.stack([ndvi, evi, savi], axis=-1)


def test_band_tables():
    assert BAND_TABLES["pastis"] == (
        "B2",
        "B3",
        "B4",
        "B5",
        "B6",
        "B7",
        "B8",
        "B8A",
        "B11",
        "B12",
    )
    assert len(BAND_TABLES["eurosat"]) == 13 and BAND_TABLES["eurosat"][-1] == "B8A"
    assert BAND_TABLES["modis"] == ("BLUE", "RED", "NIR", "MIR")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("B02", "B2"), ("b8", "B8"), ("B08", "B8"), ("b8a", "B8A"), ("B8A", "B8A"), ("nir", "B8")],
)
def test_canonical_band_name(name, expected):
    assert canonical_band_name(name) == expected


def test_band_index_by_canonical_name():
    assert band_index("eurosat", "B8") == 7
    assert band_index("eurosat", "B8A") == 12
    assert band_index("pastis", "B08") == 6
    assert band_index("modis", "B8") == 2
    assert band_index(["B4", "B3", "B2"], "red") == 0


def test_band_index_missing_band_names_it():
    with pytest.raises(ValueError, match=r"'B8'.*'B2', 'B3', 'B4'"):
        band_index(("B2", "B3", "B4"), "B8")


@pytest.mark.parametrize("table", sorted(TABLE_POSITIONS))
def test_indices_match_numpy_formulas(table):
    rng = np.random.default_rng(0)
    n_bands = len(BAND_TABLES[table])
    bands = rng.uniform(0.02, 0.6, size=(3, 4, 5, n_bands)).astype(np.float32)
    blue_at, red_at, nir_at = TABLE_POSITIONS[table]
    expected = numpy_indices(bands[..., blue_at], bands[..., red_at], bands[..., nir_at])

    values, valid = vegetation_indices(bands, table, return_mask=True)
    assert values.shape == (3, 4, 5, 3) and values.dtype == jnp.float32
    assert valid.shape == (3, 4, 5) and bool(valid.all())
    np.testing.assert_allclose(np.asarray(values), expected, rtol=1e-5, atol=1e-5)

    # Same with an explicit name list, a subset/reordering of indices and DN scaling.
    names = list(BAND_TABLES[table])
    subset = vegetation_indices(bands * 10_000, names, ("savi", "ndvi"), scale=10_000.0)
    np.testing.assert_allclose(np.asarray(subset), expected[..., [2, 0]], rtol=1e-5, atol=1e-5)


def test_missing_band_raises_with_band_name():
    bands = np.full((2, 3), 0.1, np.float32)
    with pytest.raises(ValueError, match="B8"):
        vegetation_indices(bands, ("B2", "B3", "B4"))
    # EVI needs blue; NDVI does not.
    red_nir = np.full((2, 2), 0.1, np.float32)
    vegetation_indices(red_nir, ("B4", "B8"), ("ndvi",))
    with pytest.raises(ValueError, match="B2"):
        vegetation_indices(red_nir, ("B4", "B8"), ("evi",))


def test_bad_arguments_raise():
    bands = np.zeros((2, 10), np.float32)
    with pytest.raises(ValueError, match="gndvi"):
        vegetation_indices(bands, "pastis", ("ndvi", "gndvi"))
    with pytest.raises(ValueError, match="sentinel"):
        vegetation_indices(bands, "sentinel")
    with pytest.raises(ValueError, match="channels"):
        vegetation_indices(bands[:, :9], "pastis")
    with pytest.raises(ValueError, match="same band"):
        vegetation_indices(bands[:, :2], ("B08", "B8"))


def _invalid_samples() -> np.ndarray:
    """PASTIS-ordered samples (rows) exercising every invalid case."""
    base = np.full(10, 0.2, np.float32)
    rows = []
    for blue, red, nir in [
        (0.05, 0.1, 0.4),  # 0: valid
        (0.05, np.nan, 0.4),  # 1: NaN red → all invalid
        (np.nan, 0.1, 0.4),  # 2: NaN blue → EVI invalid only
        (0.05, -10_000.0, 0.4),  # 3: nodata red → all invalid
        (0.05, 0.0, 0.0),  # 4: NIR + R = 0 → NDVI invalid, SAVI 0 but valid
        (0.4, 0.25, 0.5),  # 5: EVI denominator 0.5 + 1.5 − 3 + 1 = 0 → EVI invalid
    ]:
        row = base.copy()
        row[[0, 2, 6]] = blue, red, nir
        rows.append(row)
    return np.stack(rows)


def test_invalid_samples_are_zero_and_masked():
    bands = _invalid_samples()
    values, valid = vegetation_indices(bands, "pastis", nodata=-10_000.0, return_mask=True)
    values = np.asarray(values)
    assert np.isfinite(values).all()
    np.testing.assert_array_equal(np.asarray(valid), [True, False, False, False, False, False])
    expected = numpy_indices(bands[:, 0], bands[:, 2], bands[:, 6])
    np.testing.assert_allclose(values[0], expected[0], rtol=1e-6)
    np.testing.assert_array_equal(values[1], 0.0)
    np.testing.assert_allclose(values[2], [expected[2, 0], 0.0, expected[2, 2]], rtol=1e-6)
    np.testing.assert_array_equal(values[3], 0.0)
    np.testing.assert_array_equal(values[4], 0.0)
    np.testing.assert_allclose(values[5], [expected[5, 0], 0.0, expected[5, 2]], rtol=1e-6)


def test_gradients_are_finite():
    bands = jnp.asarray(_invalid_samples())

    def total(b):
        return vegetation_indices(b, "pastis", nodata=-10_000.0).sum()

    grad = np.asarray(jax.grad(total)(bands))
    assert np.isfinite(grad).all()
    # The valid sample has a gradient; the NaN/nodata bands get none.
    assert np.abs(grad[0]).sum() > 0
    assert grad[1, 2] == 0 and grad[3, 2] == 0


def test_jit_with_static_names():
    bands = np.random.default_rng(1).uniform(0.05, 0.5, (4, 13)).astype(np.float32)
    jitted = jax.jit(vegetation_indices, static_argnames=("band_names", "indices"))
    np.testing.assert_allclose(
        np.asarray(jitted(bands, band_names="eurosat", indices=("ndvi",))),
        np.asarray(vegetation_indices(bands, "eurosat", ("ndvi",))),
        rtol=1e-6,
    )


# Positions in the PASTIS table (B2,B3,B4,B5,B6,B7,B8,B8A,B11,B12), written out by hand.
_PASTIS = {"B3": 1, "B5": 3, "B8": 6, "B11": 8, "B12": 9}


@pytest.mark.parametrize(
    "index, a, b",
    [("ndmi", "B8", "B11"), ("nbr", "B8", "B12"), ("ndre", "B8", "B5"), ("ndwi", "B3", "B8")],
)
def test_normalised_difference_indices_match_numpy(index, a, b):
    bands = np.random.default_rng(3).uniform(0.01, 0.6, (4, 7, 10)).astype(np.float32)
    first, second = bands[..., _PASTIS[a]].astype(np.float64), bands[..., _PASTIS[b]]
    expected = (first - second) / (first + second)
    got = vegetation_indices(bands * 10_000, "pastis", (index,), scale=10_000.0)
    np.testing.assert_allclose(np.asarray(got)[..., 0], expected, rtol=1e-5, atol=1e-6)


def test_ready_made_index_band_is_read_as_is():
    ndvi = np.random.default_rng(4).uniform(-0.2, 0.9, (5, 6, 1)).astype(np.float32)
    ndvi[0, 2, 0] = np.nan
    values, valid = vegetation_indices(ndvi, ("NDVI",), ("ndvi",), return_mask=True)
    expected = np.where(np.isnan(ndvi[..., 0]), 0.0, ndvi[..., 0])
    np.testing.assert_array_equal(np.asarray(values)[..., 0], expected)
    assert not bool(valid[0, 2]) and int(np.asarray(valid).sum()) == 29
    # Scaled integer NDVI (MODIS stores NDVI × 10 000).
    scaled = vegetation_indices(np.round(ndvi * 10_000), ("ndvi",), ("ndvi",), scale=10_000.0)
    np.testing.assert_allclose(np.asarray(scaled)[1:, ..., 0], ndvi[1:, ..., 0], atol=1e-4)


def test_resolve_indices_auto_follows_the_bands():
    assert resolve_indices("auto", "pastis") == INDEX_NAMES
    # MODIS MOD13: blue, red, NIR and MIR (2.1 µm, an alias of B12): no SWIR1, green or B5.
    assert resolve_indices(("auto",), "modis") == ("ndvi", "evi", "savi", "nbr")
    assert resolve_indices("auto", ("NDVI",)) == ("ndvi",)
    assert resolve_indices(("auto",), ("B4", "B8")) == ("ndvi", "savi")
    assert resolve_indices(("ndvi", "nbr"), ("RED", "NIR", "SWIR2")) == ("ndvi", "nbr")
    with pytest.raises(ValueError, match="'evi' needs bands"):
        resolve_indices(("ndvi", "evi"), ("B4", "B8"))
    with pytest.raises(ValueError, match="no spectral index"):
        resolve_indices("auto", ("B11", "B12"))
    with pytest.raises(ValueError, match="unknown index or band 'lai'"):
        resolve_indices(("lai",), "pastis")


def test_resolve_indices_bands_and_band_names():
    # "bands": every reflectance band, canonical names, after the indices; duplicates once.
    assert resolve_indices(("auto", "bands"), ("B02", "B04", "B08", "NDVI")) == (
        "ndvi",
        "evi",
        "savi",
        "B2",
        "B4",
        "B8",
    )
    assert resolve_indices(("ndvi", "swir1", "b11"), ("RED", "NIR", "B11")) == ("ndvi", "B11")
    with pytest.raises(ValueError, match="unknown index or band 'b12'"):
        resolve_indices(("b12",), ("B4", "B8", "B11"))


def test_band_series_are_the_scaled_reflectance():
    rng = np.random.default_rng(5)
    raw = rng.uniform(0, 6000, (4, 7, 3)).astype(np.float32)
    raw[1, 2, 2] = np.nan
    raw[2, 3, 2] = -9999.0  # no-data marker
    raw[3, 4, 0] = 30_000.0  # reflectance 3.0: implausible, no-data
    values, valid = vegetation_indices(
        raw,
        ("B4", "B8", "B11"),
        ("ndvi", "B11"),
        scale=10_000.0,
        nodata=-9999.0,
        return_mask=True,
    )
    values, valid = np.asarray(values), np.asarray(valid)
    swir = raw[..., 2] / 10_000.0
    ok = np.isfinite(swir) & (raw[..., 2] != -9999.0)
    np.testing.assert_allclose(values[..., 1], np.where(ok, swir, 0.0), rtol=1e-6)
    nir, red = raw[..., 1], raw[..., 0]
    ndvi_ok = red <= 20_000.0
    np.testing.assert_allclose(
        values[..., 0], np.where(ndvi_ok, (nir - red) / (nir + red), 0.0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(valid, ok & ndvi_ok)


def test_swir_and_mir_aliases():
    assert canonical_band_name("SWIR1") == "B11"
    assert canonical_band_name("swir2") == "B12" == canonical_band_name("MIR")
    assert band_index("modis", "B12") == 3


def test_no_data_markers_and_implausible_reflectance_are_masked_not_inf():
    # 3.4e38 (GDAL's float32 no-data) used to overflow into inf/NaN indices.
    good = np.full(10, 0.2, np.float32)
    good[6] = 0.5  # NIR
    stack = np.stack([good] * 5)
    stack[1, 6] = np.finfo(np.float32).max
    stack[2, 2] = -np.finfo(np.float32).max
    stack[3, 0] = PLAUSIBLE_REFLECTANCE[1] * 1.01
    stack[4, 6] = 1e30
    values, valid = vegetation_indices(stack, "pastis", INDEX_NAMES, return_mask=True)
    values = np.asarray(values)
    assert np.all(np.isfinite(values))
    np.testing.assert_array_equal(np.asarray(valid), [True, False, False, False, False])
    # With a scale, the range applies to reflectance: 3.4e38 / 0.5 overflows, still masked.
    raw = np.where(np.abs(stack) < 1e4, np.clip(stack, -1e4, 1e4) * 10_000, stack)
    scaled = vegetation_indices(raw, "pastis", ("ndvi",), scale=10_000.0)
    assert np.all(np.isfinite(np.asarray(scaled)))
    np.testing.assert_allclose(np.asarray(scaled)[0], values[0, :1], rtol=1e-6)
    half = vegetation_indices(stack, "pastis", ("ndvi",), scale=0.5)
    assert np.all(np.isfinite(np.asarray(half)))


def test_denominator_exactly_eps_is_kept_and_bad_scales_are_refused():
    # NIR 0.375, red 0.125: NIR + red is exactly 0.5 in float32, the index (0.375 − 0.125)
    # / 0.5 = 0.5; a denominator of exactly eps is still a valid one (|d| >= eps).
    bands = np.array([[0.375, 0.125]], np.float32)
    values, valid = vegetation_indices(bands, ("B8", "B4"), ("ndvi",), eps=0.5, return_mask=True)
    assert float(values[0, 0]) == 0.5 and bool(valid[0])
    values, valid = vegetation_indices(bands, ("B8", "B4"), ("ndvi",), eps=0.51, return_mask=True)
    assert float(values[0, 0]) == 0.0 and not bool(valid[0])
    for scale in (0.0, -10_000.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="scale must be a finite positive number"):
            vegetation_indices(bands, ("B8", "B4"), ("ndvi",), scale=scale)
    with pytest.raises(ValueError, match="^bands must be a numeric"):
        vegetation_indices(np.array([["a", "b"]]), ("B8", "B4"), ("ndvi",))


def test_single_pixels_nodata_range_bounds_and_one_missing_band():
    names = ("B8", "B4", "B3")
    # One pixel as a 1-D band vector: NDVI (0.375 − 0.125) / 0.5.
    np.testing.assert_allclose(
        vegetation_indices(np.array([0.375, 0.125, 0.1]), names, ("ndvi",)), [0.5]
    )
    with pytest.raises(ValueError, match="^indices must name at least one index$"):
        vegetation_indices(np.array([0.375, 0.125, 0.1]), names, ())
    # nodata inside the plausible range: only the flag makes it a gap.
    bands = np.array([[0.375, 0.125, 0.1], [0.375, 0.2, 0.1]], np.float32)
    _, valid = vegetation_indices(bands, names, ("ndvi",), nodata=0.2, return_mask=True)
    np.testing.assert_array_equal(valid, [True, False])
    # The plausible reflectance range is closed: its two ends are still reflectance.
    low, high = PLAUSIBLE_REFLECTANCE
    ends = np.array([[high, 0.125, 0.1], [0.375, low, 0.1]], np.float32)
    _, valid = vegetation_indices(ends, names, ("ndvi",), return_mask=True)
    np.testing.assert_array_equal(valid, [True, True])
    # A normalised difference needs both of its bands (NDWI: B3 against B8).
    gap = np.array([[np.nan, 0.125, 0.1], [0.375, 0.125, 0.1]], np.float32)
    values, valid = vegetation_indices(gap, names, ("ndwi",), return_mask=True)
    np.testing.assert_array_equal(valid, [False, True])
    np.testing.assert_allclose(values[:, 0], [0.0, (0.1 - 0.375) / 0.475], atol=1e-6)


def test_image_bands_auto_explicit_and_missing():
    # "auto": B4, B3, B2, B8 where the data hold them (any spelling), else every band.
    pastis = BAND_TABLES["pastis"]
    assert resolve_image_bands("auto", pastis) == ("B4", "B3", "B2", "B8")
    assert resolve_image_bands(("auto",), ["b2", "b3", "b4", "b08"]) == ("B4", "B3", "B2", "B8")
    assert resolve_image_bands("auto", ["B2", "B3", "B4"]) == ("B2", "B3", "B4")
    assert resolve_image_bands(["auto"], ("NDVI", "EVI")) == ("NDVI", "EVI")
    # Explicit names come back as given, a plain string as one band, each checked.
    assert resolve_image_bands(["b8", "B2"], pastis) == ("b8", "B2")
    assert resolve_image_bands("B11", pastis) == ("B11",)
    with pytest.raises(ValueError, match=r"^band 'B9' \(canonical 'B9'\) not found in band names"):
        resolve_image_bands(["B4", "B9"], pastis)


def test_band_names_must_be_strings():
    with pytest.raises(ValueError, match=r"^band names must be strings, got 7"):
        canonical_band_name(7)


def test_band_tables_and_inputs_refused_with_the_fix():
    with pytest.raises(
        ValueError,
        match=r"^unknown band table 'landsat9'; known tables: \[.*"
        r"\(or pass a sequence of band names\)$",
    ):
        resolve_band_names("landsat9")
    for bad in (5, ["B2", 3]):  # not iterable; not all strings
        with pytest.raises(
            ValueError,
            match=r"^band_names must be a sequence of band name "
            r"strings or a band table name \(\['eurosat'",
        ):
            resolve_band_names(bad)
    with pytest.raises(ValueError, match=r"^indices \(\) name nothing to compute from bands"):
        resolve_indices((), ("B4", "B8"))
    # Values without a dtype are read through NumPy; what NumPy cannot read is named.
    check_numeric([[1, 2], [3, 4]], "bands")
    with pytest.raises(ValueError, match=r"^bands must be a numeric \(bool, int or float\)"):
        check_numeric([["a"]], "bands")
    with pytest.raises(ValueError, match=r"^bands must be a numeric array, got list \("):
        check_numeric([[1, 2], [3]], "bands")
    with pytest.raises(ValueError, match=r"^bands must be a numeric \(bool, int or float\)"):
        check_numeric(np.array([1 + 2j]), "bands")

    class Strange:  # a dtype that is no dtype at all
        dtype = "banana"

    with pytest.raises(ValueError, match=r"^bands must be a numeric .* got dtype banana"):
        check_numeric(Strange(), "bands")
