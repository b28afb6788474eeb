"""Tests for pimc_jax.data.user: the documented pixel-series and patch-folder formats.

References are the arrays the fixture writers saved and day counts computed with
``datetime`` in the writers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from format_writers import write_user_npz, write_user_patch_folder

from pimc_jax.data import user


def _edit_npz(path, **changes):
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)


def test_pixel_npz_integer_dates(tmp_path):
    path = tmp_path / "pixels.npz"
    written = write_user_npz(path, num_pixels=6, num_dates=5)
    series = user.load_pixel_npz(path)
    assert series.bands.shape == (6, 5, 4) and series.bands.dtype == np.float32
    np.testing.assert_array_equal(series.bands, written["bands"])  # NaN at [0, 1, 0] too
    assert series.dates.dtype == np.float32
    np.testing.assert_array_equal(series.dates, written["days"])
    assert series.mask.all() and series.mask.shape == (6, 5)
    assert series.band_names == ("B2", "B3", "B4", "B8")
    np.testing.assert_array_equal(series.labels, written["labels"])
    assert series.labels.dtype == np.int32
    assert series.class_names == ("class_0", "class_1", "class_2")
    batch = series.as_batch()
    assert set(batch) == {"bands", "dates", "mask", "labels"}


def test_pixel_npz_iso_dates_per_pixel(tmp_path):
    path = tmp_path / "pixels.npz"
    written = write_user_npz(path, iso_dates=True, per_pixel_dates=True, num_classes=None)
    assert written["dates"].dtype.kind == "U"
    series = user.load_pixel_npz(path)
    np.testing.assert_array_equal(series.dates, written["days"])
    assert series.labels is None and series.class_names is None


@pytest.mark.parametrize(
    "dates, match",
    [
        ([20190401, 20190411], "look like YYYYMMDD"),
        ([0.0, 3.4e38], "not a day count within"),  # would overflow float32 to inf
        ([-1_000_001, 0], "not a day count within"),
    ],
)
def test_dates_that_are_not_day_counts_are_one_line_errors(tmp_path, dates, match):
    path = tmp_path / "pixels.npz"
    np.savez(path, bands=np.zeros((1, 2, 1)), band_names=["B4"], dates=np.asarray(dates))
    with pytest.raises(ValueError, match=match) as error:
        user.load_pixel_npz(path)
    assert "\n" not in str(error.value)
    # The largest day counts still load, exactly.
    np.savez(path, bands=np.zeros((1, 2, 1)), band_names=["B4"], dates=[-1_000_000, 1_000_000])
    np.testing.assert_array_equal(user.load_pixel_npz(path).dates, [[-1_000_000, 1_000_000]])


def test_iso_date_hand_value(tmp_path):
    path = tmp_path / "pixels.npz"
    np.savez(
        path,
        bands=np.zeros((1, 2, 3)),
        band_names=["B04", "b08", "blue"],
        dates=["1970-01-02", "2018-09-24"],
    )
    series = user.load_pixel_npz(path)
    np.testing.assert_array_equal(series.dates, [[1.0, 17532.0 + 266.0]])


def test_pixel_npz_padding_mask(tmp_path):
    path = tmp_path / "pixels.npz"
    written = write_user_npz(path, num_pixels=3, num_dates=5, iso_dates=True, lengths=[5, 3, 1])
    series = user.load_pixel_npz(path)
    lengths = [5, 3, 1]
    np.testing.assert_array_equal(series.mask.sum(1), lengths)
    for pixel, length in enumerate(lengths):
        real = written["bands_reflectance"][pixel, :length]
        np.testing.assert_array_equal(series.bands[pixel, :length], real)
        assert np.isnan(series.bands[pixel, length:]).all()
        np.testing.assert_array_equal(series.dates[pixel, :length], written["days"][pixel, :length])
        # Padded dates repeat the last real one.
        assert (series.dates[pixel, length:] == written["days"][pixel, length - 1]).all()


def test_pixel_npz_scale(tmp_path):
    path = tmp_path / "pixels.npz"
    np.savez(
        path,
        bands=np.array([[[1000, 2000], [3000, 4000]]], np.int16),
        band_names=["B4", "B8"],
        dates=[10, 20],
        scale=0.0001,
    )
    np.testing.assert_allclose(user.load_pixel_npz(path).bands, [[[0.1, 0.2], [0.3, 0.4]]])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bands": np.zeros((6, 5))}, r"\(N, T, C\)"),
        ({"band_names": np.array(["B2", "B3", "B4"])}, "4 bands but band_names has 3"),
        ({"dates": np.arange(4)}, r"dates must have shape \(5,\)"),
        ({"dates": np.array([1, 2, 3, 3, 4])}, "strictly increasing"),
        ({"dates": np.array(["2019-04-01", "April 2", "x", "y", "z"])}, "ISO"),
        ({"band_names": np.array(["B2", "B3", "B4", "B13"])}, "unknown band names.*B13"),
        ({"band_names": np.array(["B2", "B3", "B4", "LAI"])}, "unknown band names.*LAI"),
        ({"band_names": np.array(["B2", "B3", "B02", "B8"])}, "same band twice"),
        ({"band_names": np.array(["BLUE", "B3", "B2", "B8"])}, "same band twice"),
        ({"labels": np.array([0, 1, 2, 3, 0, 0])}, r"labels must lie in 0\.\.2"),
        ({"labels": np.zeros(5, int)}, r"labels must have shape \(6,\)"),
        ({"band_names": None}, "missing arrays.*band_names"),
        ({"mask": np.ones((6, 5), bool) & (np.arange(5) != 2)}, "mask row"),
        ({"mask": np.zeros((6, 5), bool)}, "mask row"),
        ({"bands": np.array([["a"] * 4] * 5)[None].repeat(6, 0)}, "numeric"),
    ],
)
def test_pixel_npz_errors_name_file_and_problem(tmp_path, changes, message):
    path = tmp_path / "my_pixels.npz"
    write_user_npz(path, num_pixels=6, num_dates=5)
    _edit_npz(path, **changes)
    with pytest.raises(ValueError, match=message) as info:
        user.load_pixel_npz(path)
    assert "my_pixels.npz" in str(info.value)


def test_pixel_npz_unreadable(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        user.load_pixel_npz(tmp_path / "absent.npz")
    np.savez(tmp_path / "objects.npz", bands=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="objects.npz"):
        user.load_pixel_npz(tmp_path / "objects.npz")


@pytest.mark.parametrize("layout", ["THWC", "TCHW"])
@pytest.mark.parametrize("metadata_json", [True, False])
def test_patch_folder_layouts(tmp_path, layout, metadata_json):
    written = write_user_patch_folder(tmp_path, layout=layout, metadata_json=metadata_json)
    patches = user.load_patch_folder(tmp_path)
    assert [p.patch_id for p in patches] == ["patch_0", "patch_1"]
    for patch in patches:
        reference = written[patch.patch_id]
        np.testing.assert_array_equal(patch.bands, reference["reflectance"])
        np.testing.assert_array_equal(patch.dates, reference["days"])
        np.testing.assert_array_equal(patch.labels, reference["labels"])
        assert patch.band_names == ("B2", "B3", "B4", "B8")
        assert patch.fold == 0
    assert [p.num_dates for p in patches] == [4, 5]


def test_patch_folder_digital_numbers_nodata_iso(tmp_path):
    written = write_user_patch_folder(
        tmp_path, digital_numbers=True, iso_dates=True, with_labels=False
    )
    patches = user.load_patch_folder(tmp_path)
    for patch in patches:
        reference = written[patch.patch_id]
        np.testing.assert_allclose(patch.bands, reference["reflectance"], rtol=1e-6)
        assert np.isnan(patch.bands[1, 2, 3]).all()
        assert np.isnan(patch.bands).sum() == 4
        np.testing.assert_array_equal(patch.dates, reference["days"])
        assert patch.labels is None


def test_patch_folder_per_file_keys_override_metadata(tmp_path):
    write_user_patch_folder(tmp_path, num_patches=1, layout="TCHW")
    _edit_npz(tmp_path / "patch_0.npz", layout=np.array("THWC"), fold=np.array(3))
    # Stored as (T, C, H, W) = (4, 4, 8, 8): read as THWC, the last axis gives 8 bands for
    # 4 band names.
    with pytest.raises(ValueError, match="is layout 'THWC' right"):
        user.load_patch_folder(tmp_path)
    _edit_npz(tmp_path / "patch_0.npz", layout=np.array("TCHW"))
    (patch,) = user.load_patch_folder(tmp_path)
    assert patch.fold == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dates": np.arange(3)}, r"dates must have shape \(5,\)"),
        ({"dates": np.array([3, 2, 5, 9, 10])}, "strictly increasing"),
        ({"labels": np.zeros((8, 7), int)}, r"labels must have shape \(8, 8\)"),
        ({"bands": np.zeros((4, 8, 8))}, "4-D"),
        ({"bands": None}, "missing array 'bands'"),
        ({"band_names": np.array(["B2", "B3", "B4", "B5"])}, "differ"),
        ({"layout": np.array("HWCT")}, "layout"),
    ],
)
def test_patch_folder_errors_name_file(tmp_path, changes, message):
    write_user_patch_folder(tmp_path, num_patches=2)
    _edit_npz(tmp_path / "patch_1.npz", **changes)
    with pytest.raises(ValueError, match=message) as info:
        user.load_patch_folder(tmp_path)
    assert "patch_1.npz" in str(info.value)


def test_patch_folder_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        user.load_patch_folder(tmp_path / "absent")
    with pytest.raises(ValueError, match="no .npz"):
        user.load_patch_folder(tmp_path)
    write_user_patch_folder(tmp_path, num_patches=1)
    (tmp_path / "metadata.json").write_text(json.dumps({"bandnames": ["B2"]}))
    with pytest.raises(ValueError, match=r"metadata.json.*bandnames"):
        user.load_patch_folder(tmp_path)
    (tmp_path / "metadata.json").write_text("{")
    with pytest.raises(ValueError, match="metadata.json"):
        user.load_patch_folder(tmp_path)
    (tmp_path / "metadata.json").unlink()
    with pytest.raises(ValueError, match="no band_names"):
        user.load_patch_folder(tmp_path)


def test_known_band_names():
    for name in ("B1", "B01", "b8a", "B08A", "B12", "NIR", "red", "Blue", "MIR"):
        assert user.is_known_band_name(name), name
    for name in ("B0", "B13", "B8B", "sur_refl_b01", "LAI", ""):
        assert not user.is_known_band_name(name), name


@pytest.mark.parametrize(
    ("layout", "metadata_json", "s1_units", "iso_dates"),
    [
        ("THWC", True, "db", False),
        ("TCHW", False, "linear", True),
        ("THWC", False, "linear", False),
    ],
)
def test_patch_folder_sentinel1(tmp_path, layout, metadata_json, s1_units, iso_dates):
    written = write_user_patch_folder(
        tmp_path,
        num_patches=3,
        layout=layout,
        metadata_json=metadata_json,
        s1_units=s1_units,
        iso_dates=iso_dates,
    )
    patches = user.load_patch_folder(tmp_path)
    assert [p.has_s1 for p in patches] == [True, True, False]
    for patch in patches[:2]:
        reference = written[patch.patch_id]
        assert patch.s1_band_names == ("VH", "VV")
        assert patch.s1_bands.dtype == np.float32 and patch.s1_dates.dtype == np.int32
        assert patch.s1_bands.shape == reference["s1_db"].shape
        # dB as stored, or 10 log10 of the stored linear power; s1_nodata at (0, 1, 1).
        np.testing.assert_allclose(patch.s1_bands, reference["s1_db"], atol=1e-4)
        assert np.isnan(patch.s1_bands[0, 1, 1]).all() and np.isnan(patch.s1_bands).sum() == 2
        np.testing.assert_array_equal(patch.s1_dates, reference["s1_days"])
        # The S2 side as without S1.
        np.testing.assert_array_equal(patch.bands, reference["reflectance"])
    assert patches[2].s1_bands is None and patches[2].s1_dates is None


def test_patch_folder_sentinel1_hand_value(tmp_path):
    bands = np.full((2, 2, 2, 1), 0.3, np.float32)
    # Linear power 0.1 is -10 dB, 0.001 is -30 dB; 0 and negative powers are gaps.
    s1 = np.array([0.1, 0.001, 0.0, -1.0], np.float32).reshape(1, 2, 2, 1)
    np.savez(
        tmp_path / "p.npz",
        bands=bands,
        dates=np.array([3, 9]),
        band_names=np.array(["B8"]),
        s1_bands=s1,
        s1_dates=np.array(["2019-01-02"]),
        s1_band_names=np.array(["vv"]),
        s1_units=np.array("Linear"),
    )
    (patch,) = user.load_patch_folder(tmp_path)
    np.testing.assert_allclose(patch.s1_bands[0, :, :, 0], [[-10, -30], [np.nan, np.nan]])
    assert patch.s1_dates.tolist() == [17898]  # 2019-01-02: 49 years, 12 leap days, + 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"s1_dates": None}, "both s1_bands and s1_dates"),
        ({"s1_bands": None}, "both s1_bands and s1_dates"),
        ({"s1_bands": np.zeros((4, 7, 8, 2), np.float32)}, "share the pixel grid"),
        ({"s1_bands": np.zeros((4, 8, 8), np.float32)}, "s1_bands must be 4-D"),
        ({"s1_bands": np.zeros((0, 8, 8, 2), np.float32), "s1_dates": np.zeros(0)}, "no date"),
        ({"s1_bands": np.zeros((4, 8, 8, 3), np.float32)}, "3 channels but s1_band_names has 2"),
        ({"s1_band_names": np.array(["VV", "HH"])}, r"unknown Sentinel-1 band names \['HH'\]"),
        ({"s1_band_names": np.array(["VV", "vv"])}, "twice"),
        ({"s1_band_names": np.array(["VV", "VV/VH"])}, "differ"),
        ({"s1_units": np.array("natural")}, "s1_units must be one of"),
        ({"s1_dates": np.array([5, 1, 9, 12])}, "s1_dates are missing or not strictly"),
        ({"s1_dates": np.array([1, 2])}, r"s1_dates must have shape \(4,\)"),
        ({"s1_nodata": np.array("x")}, "s1_nodata must be a number"),
    ],
)
def test_patch_folder_sentinel1_errors_name_file(tmp_path, changes, message):
    write_user_patch_folder(tmp_path, num_patches=3, metadata_json=False, s1_units="db")
    _edit_npz(tmp_path / "patch_1.npz", **changes)  # 4 S1 dates of 8 x 8 pixels, VH and VV
    with pytest.raises(ValueError, match=message) as info:
        user.load_patch_folder(tmp_path)
    assert "patch_1.npz" in str(info.value)


def test_patch_folder_sentinel1_names_from_metadata(tmp_path):
    write_user_patch_folder(tmp_path, num_patches=2, s1_units="db")
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["s1_band_names"] == ["vh", "VV"]
    metadata.pop("s1_band_names")
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="no s1_band_names"):
        user.load_patch_folder(tmp_path)


def test_offset_before_scale_in_every_reader(tmp_path):
    """reflectance = (stored + offset) × scale (Sentinel-2 L2A from baseline 04.00: offset
    −1000, scale 1e-4); reference: the hand-computed values, and the GeoTIFF folder read
    without an offset, less 0.1."""
    from format_writers import write_geotiff_patch_folder

    pixels = tmp_path / "pixels.npz"
    np.savez(
        pixels,
        bands=np.array([[[1500, 2000], [3000, 1000]]], np.int16),
        band_names=["B4", "B8"],
        dates=[0, 10],
        scale=1e-4,
        offset=-1000,
    )
    np.testing.assert_allclose(
        user.load_pixel_npz(pixels).bands, [[[0.05, 0.1], [0.2, 0.0]]], atol=1e-7
    )

    folder = tmp_path / "patches"
    folder.mkdir()
    (folder / "metadata.json").write_text(
        json.dumps({"band_names": ["B4", "B8"], "scale": 1e-4, "offset": -1000})
    )
    np.savez(folder / "p.npz", bands=np.full((2, 3, 3, 2), 2500, np.int16), dates=[0, 10])
    (patch,) = user.load_patch_folder(folder)
    np.testing.assert_allclose(patch.bands, 0.15, atol=1e-7)

    tifs = tmp_path / "tifs"
    write_geotiff_patch_folder(tifs, num_patches=1)
    plain = user.load_patch_folder(tifs)[0].bands
    meta = json.loads((tifs / "metadata.json").read_text())
    (tifs / "metadata.json").write_text(json.dumps({**meta, "offset": -1000}))
    shifted = user.load_patch_folder(tifs)[0].bands
    np.testing.assert_array_equal(np.isnan(shifted), np.isnan(plain))
    np.testing.assert_allclose(shifted, plain - 0.1, atol=1e-6)

    (folder / "metadata.json").write_text(json.dumps({"band_names": ["B4", "B8"], "offset": "x"}))
    with pytest.raises(ValueError, match="offset must be a finite number"):
        user.load_patch_folder(folder)
