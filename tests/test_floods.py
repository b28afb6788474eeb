"""Flood segmentation: the Sen1Floods11 reader against the official layout, the synthetic
flood stand-in, and the ``eval_floods`` task end to end."""

from __future__ import annotations

import numpy as np
import pytest

from pimc_jax.data import sen1floods11 as s1f
from pimc_jax.data.synthetic.floods import make_flood_chips, make_flood_patches, make_flood_scene
from tests.format_writers import SEN1FLOODS11_S2_BANDS, write_sen1floods11_dir


@pytest.fixture(scope="module")
def floods_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sen1floods11")
    return root, write_sen1floods11_dir(root)


def test_reader_band_order_units_and_labels(floods_dir):
    root, written = floods_dir
    chips = s1f.load_sen1floods11(root, "test")
    assert chips.chip_ids == ["Ghana_103", "Paraguay_401"]
    assert s1f.S2_BANDS == SEN1FLOODS11_S2_BANDS
    for chip in chips:
        ref = written[chip.chip_id]
        assert chip.event == chip.chip_id.split("_")[0]
        # Sentinel-2: band k of the file is channel k, digital numbers / 10 000, DN 0 → NaN.
        expected = ref["dn"].transpose(1, 2, 0).astype(np.float32) / 10_000
        expected[1, 0, :] = np.nan
        np.testing.assert_allclose(chip.s2, expected, rtol=1e-6)
        assert chip.s2.dtype == np.float32
        assert 0.1 <= np.nanmin(chip.s2) and np.nanmax(chip.s2) < 0.3  # reflectance, not DN
        # Sentinel-1: VV, VH in dB as stored, then VV − VH; NaN kept.
        np.testing.assert_array_equal(chip.s1[..., 0], ref["vv"])
        np.testing.assert_array_equal(chip.s1[..., 1], ref["vh"])
        np.testing.assert_allclose(chip.s1[..., 2], ref["vv"] - ref["vh"], rtol=1e-6)
        assert np.isnan(chip.s1[0, 1, 1]) and np.isnan(chip.s1[0, 1, 2])
        assert np.nanmax(chip.s1[..., 0]) < 0  # dB, not linear power
        # Labels: -1 / 0 / 1 as stored.
        np.testing.assert_array_equal(chip.labels, ref["labels"])
        assert set(np.unique(chip.labels)) == {-1, 0, 1}
        np.testing.assert_array_equal(chip.valid, ref["labels"] != -1)
        assert chip.crs == "EPSG:4326"
        np.testing.assert_allclose(chip.transform, ref["transform"])


def test_reader_skips_chips_without_valid_labels(floods_dir):
    root, _ = floods_dir
    train = s1f.load_sen1floods11(root, "train")
    assert train.chip_ids == ["Ghana_101", "Ghana_102", "India_201"]
    assert train.num_skipped == 1 and train.skipped == ["Spain_900"]
    assert len(s1f.load_sen1floods11(root / "v1.1", "valid")) == 1  # v1.1 itself as the root


def test_reader_band_subset_and_patch(floods_dir):
    root, written = floods_dir
    chip = s1f.load_sen1floods11(root, "valid", s2_band_names=("B4", "B3", "B2", "B8A"))[0]
    dn = written[chip.chip_id]["dn"]
    np.testing.assert_allclose(chip.s2[2, 2], dn[[3, 2, 1, 8], 2, 2] / 10_000, rtol=1e-6)
    patch = chip.to_patch()
    assert patch.bands.shape == (1, 16, 16, 4) and patch.s1_bands.shape == (1, 16, 16, 3)
    assert patch.s1_band_names == ("VV", "VH", "VV/VH") and patch.has_s1


def test_reader_errors_name_the_file(floods_dir, tmp_path):
    root, _ = floods_dir
    with pytest.raises(FileNotFoundError, match="no such split"):
        s1f.load_sen1floods11(root, "bolivia")
    with pytest.raises(FileNotFoundError, match="no Sen1Floods11 layout"):
        s1f.load_sen1floods11(tmp_path, "train")
    bad = tmp_path / "bad"
    write_sen1floods11_dir(bad, {"train": ("Ghana_1",)}, size=8, empty_label=None)
    (bad / "v1.1/data/flood_events/HandLabeled/S2Hand/Ghana_1_S2Hand.tif").unlink()
    with pytest.raises(FileNotFoundError, match="Ghana_1_S2Hand.tif"):
        s1f.load_sen1floods11(bad, "train")


def test_synthetic_floods_rise_and_look_like_water():
    scene = make_flood_scene(0, size=48, num_dates=4)
    water = scene["water"]
    fractions = water.mean(axis=(1, 2))
    assert np.all(np.diff(fractions) > 0)  # the water rises
    assert np.all(water[1:] >= water[:-1])  # and never recedes
    last, s2, s1 = water[-1], scene["s2"][-1], scene["s1"][-1]
    green, swir = s2[..., 2], s2[..., 11]
    mndwi = (green - swir) / (green + swir)
    assert mndwi[last].mean() > 0.3 > -0.1 > mndwi[~last].mean()  # bright in a water index
    assert s1[..., 0][last].mean() < s1[..., 0][~last].mean() - 5  # dark in VV
    np.testing.assert_array_equal(make_flood_scene(0, size=48, num_dates=4)["s1"], scene["s1"])
    chips = make_flood_chips(3, size=24, first_index=2)
    assert [c.chip_id.split("_")[1] for c in chips] == ["2", "3", "4"]
    again = make_flood_chips(1, size=24, first_index=2)[0]
    np.testing.assert_array_equal(chips[0].labels, again.labels)
    assert set(np.unique(np.concatenate([c.labels.ravel() for c in chips]))) <= {-1, 0, 1}
    patch = make_flood_patches(1, size=24, num_dates=3)[0]
    assert patch.bands.shape == (3, 24, 24, 13) and patch.s1_bands.shape == (3, 24, 24, 3)
    assert np.all(patch.s1_dates == patch.dates + 1)
