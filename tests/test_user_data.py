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
