"""Tests for pimc_jax.data.pastis on a tiny PASTIS directory in the official layout.

The reference is what the fixture wrote: the int16 digital numbers, TARGET arrays and
YYYYMMDD dates (with their day counts computed by ``datetime`` in the fixture).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow_datasets as tfds
from format_writers import write_pastis_dir

from pimc_jax.data import pastis
from pimc_jax.data.radar import count_without_s1


@pytest.fixture(scope="module")
def pastis_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pastis")
    written = write_pastis_dir(path, num_patches=4, size=16)
    return path, written


def test_patches_match_the_files(pastis_dir):
    path, written = pastis_dir
    patches = pastis.load_pastis_patches(path, folds=(1, 2, 3, 4))
    assert [p.patch_id for p in patches] == ["10000", "10007", "10014", "10021"]
    for patch in patches:
        reference = written[patch.patch_id]
        expected = np.transpose(reference["dn"], (0, 2, 3, 1)).astype(np.float32) / np.float32(
            10_000
        )
        # Stored as the int16 digital numbers; reflectance is DN / 10 000 on access.
        assert patch.bands.dtype == np.int16
        np.testing.assert_array_equal(patch.bands, np.transpose(reference["dn"], (0, 2, 3, 1)))
        assert patch.reflectance().dtype == np.float32
        np.testing.assert_array_equal(patch.reflectance(), expected)
        np.testing.assert_array_equal(patch.reflectance(np.s_[:, 3, 4, 2]), expected[:, 3, 4, 2])
        assert patch.dates.dtype == np.int32
        np.testing.assert_array_equal(patch.dates, reference["days"])
        np.testing.assert_array_equal(patch.labels, reference["target"][0])
        assert patch.labels.dtype == np.int32
        assert patch.fold == reference["fold"]
        assert patch.band_names == ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    # Variable numbers of dates are kept (5, 6, 7, 8).
    assert [p.num_dates for p in patches] == [5, 6, 7, 8]
    assert (path / "tfds" / "pastis" / "1.1.0").is_dir()
    assert all(patch.s1_bands is None and not patch.has_s1 for patch in patches)


def test_lazy_patches_and_host_shards_match_the_files(pastis_dir):
    path, written = pastis_dir
    lazy = pastis.load_pastis_patches(path, folds=(1, 2, 3, 4), lazy=True)
    assert isinstance(lazy, pastis.LazyPatches) and len(lazy) == 4
    assert sorted(p.patch_id for p in lazy) == ["10000", "10007", "10014", "10021"]
    for patch in lazy[1:3]:
        reference = written[patch.patch_id]
        np.testing.assert_array_equal(
            patch.reflectance(), np.transpose(reference["dn"], (0, 2, 3, 1)) / np.float32(10_000)
        )
    shards = [
        pastis.load_pastis_patches(path, folds=(1, 2, 3, 4), process_index=i, process_count=3)
        for i in range(3)
    ]
    ids = sorted(p.patch_id for shard in shards for p in shard)
    assert ids == ["10000", "10007", "10014", "10021"]  # disjoint and complete
    assert [len(shard) for shard in shards] == [2, 1, 1]


def test_fold_selection_and_splits(pastis_dir):
    path, written = pastis_dir
    patches = pastis.load_pastis_patches(path, folds=(3, 1))
    assert [(p.fold, p.patch_id) for p in patches] == [(1, "10000"), (3, "10014")]
    builder = pastis.prepare_pastis(path)
    assert sorted(builder.info.splits) == ["fold1", "fold2", "fold3", "fold4"]
    # The registered builder is readable by name with the plain TFDS API.
    source = tfds.data_source("pastis", split="fold2", data_dir=str(path / "tfds"))
    (example,) = [source[i] for i in range(len(source))]
    np.testing.assert_array_equal(
        example["bands"], np.transpose(written["10007"]["dn"], (0, 2, 3, 1))
    )
    # Fold 5 holds no patch in this directory.
    with pytest.raises(ValueError, match="no patch in folds"):
        pastis.load_pastis_patches(path, folds=(5,))
    with pytest.raises(ValueError, match="folds"):
        pastis.load_pastis_patches(path, folds=(0,))


def test_explicit_data_dir(tmp_path):
    written = write_pastis_dir(tmp_path / "src", num_patches=1, size=8)
    patches = pastis.load_pastis_patches(tmp_path / "src", folds=(1,), data_dir=tmp_path / "out")
    assert (tmp_path / "out" / "pastis").is_dir()
    assert not (tmp_path / "src" / "tfds").exists()
    np.testing.assert_array_equal(patches[0].dates, written["10000"]["days"])


def test_yyyymmdd_to_days_hand_values():
    assert pastis.yyyymmdd_to_days(19700101) == 0
    assert pastis.yyyymmdd_to_days("19700201") == 31
    # 2018 starts 48 years (12 of them leap) after 1970: 48 * 365 + 12 = 17532; Sep 24 is
    # day 267 of 2018.
    assert pastis.yyyymmdd_to_days(20180924) == 17532 + 266
    with pytest.raises(ValueError, match="YYYYMMDD"):
        pastis.yyyymmdd_to_days(2018092)
    with pytest.raises(ValueError, match="invalid"):
        pastis.yyyymmdd_to_days(20180231)


def test_norm_statistics_are_fold_averages_in_reflectance(pastis_dir):
    path, _ = pastis_dir
    stats = json.loads((path / "NORM_S2_patch.json").read_text())
    mean, std = pastis.load_pastis_norm(path, folds=(1, 2))
    expected_mean = (np.array(stats["Fold_1"]["mean"]) + stats["Fold_2"]["mean"]) / 2 / 10_000
    expected_std = (np.array(stats["Fold_1"]["std"]) + stats["Fold_2"]["std"]) / 2 / 10_000
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-6)
    np.testing.assert_allclose(std, expected_std, rtol=1e-6)
    assert mean.shape == (10,) and mean.dtype == np.float32


def _rewrite_metadata(path, edit):
    meta_file = path / "metadata.geojson"
    collection = json.loads(meta_file.read_text())
    edit(collection["features"][0]["properties"])
    meta_file.write_text(json.dumps(collection))


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="metadata.geojson"):
        pastis.load_pastis_patches(tmp_path)
    write_pastis_dir(tmp_path, num_patches=2, size=8)
    (tmp_path / "DATA_S2" / "S2_10007.npy").unlink()
    with pytest.raises(ValueError, match="S2_10007.npy"):
        pastis.load_pastis_patches(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        pastis.load_pastis_patches(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="NORM_S2_patch.json"):
        pastis.load_pastis_norm(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda props: props.pop("dates-S2"), "dates-S2"),
        (lambda props: props.update(Fold=7), "Fold"),
        (lambda props: props["dates-S2"].update({"1": 20180230}), "invalid YYYYMMDD"),
        (lambda props: props["dates-S2"].update({"1": 20170101}), "strictly increasing"),
    ],
)
def test_bad_metadata(tmp_path, edit, message):
    write_pastis_dir(tmp_path, num_patches=1, size=8)
    _rewrite_metadata(tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        pastis.load_pastis_patches(tmp_path, folds=(1,))


def test_dates_as_json_string_are_accepted(tmp_path):
    written = write_pastis_dir(tmp_path, num_patches=1, size=8)
    _rewrite_metadata(
        tmp_path, lambda props: props.update({"dates-S2": json.dumps(props["dates-S2"])})
    )
    (patch,) = pastis.load_pastis_patches(tmp_path, folds=(1,))
    np.testing.assert_array_equal(patch.dates, written["10000"]["days"])


@pytest.mark.parametrize(
    ("file_name", "array", "message"),
    [
        (
            "DATA_S2/S2_10000.npy",
            np.zeros((5, 9, 8, 8), np.int16),
            r"S2_10000.npy.*\(5, 10, H, W\)",
        ),
        ("DATA_S2/S2_10000.npy", np.zeros((4, 10, 8, 8), np.int16), "S2_10000.npy"),
        ("DATA_S2/S2_10000.npy", np.zeros((5, 10, 8, 8), np.float32), "integer"),
        ("ANNOTATIONS/TARGET_10000.npy", np.zeros((3, 8, 7), np.uint8), "TARGET_10000.npy"),
        ("ANNOTATIONS/TARGET_10000.npy", np.full((3, 8, 8), 20, np.uint8), "class 20"),
    ],
)
def test_bad_arrays_are_named(tmp_path, file_name, array, message):
    write_pastis_dir(tmp_path, num_patches=1, size=8)  # patch 10000 has 5 dates
    np.save(tmp_path / file_name, array)
    with pytest.raises(ValueError, match=message):
        pastis.load_pastis_patches(tmp_path, folds=(1,))


# PASTIS-R: Sentinel-1 series of both orbits beside the S2 ones.


@pytest.fixture(scope="module")
def pastis_r_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pastis_r")
    written = write_pastis_dir(path, num_patches=3, size=8, s1=True, without_s1=(1,))
    return path, written


def _db_mean(values_db):
    """Mean in linear power of finite dB values, back in dB (math module, one by one)."""
    finite = [v for v in values_db if math.isfinite(v)]
    if not finite:
        return math.nan
    return 10 * math.log10(sum(10 ** (v / 10) for v in finite) / len(finite))


def _merged_reference(reference, row, col):
    """(days, (T, 3) dB) of S1A and S1D merged at one pixel, written out date by date."""
    by_day = {}
    for orbit in ("s1a", "s1d"):
        for t, day in enumerate(reference[f"{orbit}_days"]):
            by_day.setdefault(int(day), []).append(reference[orbit][t, :, row, col])
    days, values = sorted(by_day), []
    for day in days:
        vv = _db_mean([float(v[0]) for v in by_day[day]])
        vh = _db_mean([float(v[1]) for v in by_day[day]])
        ratio = vv - vh if len(by_day[day]) > 1 else float(by_day[day][0][2])
        values.append([vv, vh, ratio])
    return np.array(days), np.array(values)


@pytest.mark.parametrize("orbit", ["S1A", "S1D"])
def test_pastis_r_orbit_series_match_the_files(pastis_r_dir, orbit, caplog):
    path, written = pastis_r_dir
    with caplog.at_level("WARNING"):
        patches = pastis.load_pastis_patches(path, folds=(1, 2, 3), s1=orbit.lower())
    assert [p.patch_id for p in patches] == ["10000", "10007", "10014"]
    assert "1 of 3 patches have no Sentinel-1 series" in caplog.text
    for patch in patches:
        reference = written[patch.patch_id]
        # The S2 side is unchanged by the S1 series.
        np.testing.assert_array_equal(patch.bands, np.transpose(reference["dn"], (0, 2, 3, 1)))
        assert patch.s1_band_names == ("VV", "VH", "VV/VH")
        assert patch.s1_bands.dtype == np.float32 and patch.s1_dates.dtype == np.int32
        if patch.patch_id == "10007":  # written without S1: an empty series
            assert not patch.has_s1
            assert patch.s1_bands.shape == (0, 8, 8, 3) and patch.s1_dates.shape == (0,)
            continue
        key = orbit.lower()
        assert patch.has_s1
        np.testing.assert_array_equal(patch.s1_bands, np.transpose(reference[key], (0, 2, 3, 1)))
        np.testing.assert_array_equal(patch.s1_dates, reference[f"{key}_days"])
    assert count_without_s1(patches) == 1


def test_pastis_r_both_orbits_merge_by_date(pastis_r_dir):
    path, written = pastis_r_dir
    patches = pastis.load_pastis_patches(path, folds=(1, 2, 3), s1="both")
    for patch in (p for p in patches if p.has_s1):
        reference = written[patch.patch_id]
        days = np.union1d(reference["s1a_days"], reference["s1d_days"])
        # S1D's second date is S1A's second one: one day fewer than the two orbits hold.
        assert len(days) == len(reference["s1a_days"]) + len(reference["s1d_days"]) - 1
        np.testing.assert_array_equal(patch.s1_dates, days)
        for row, col in ((0, 0), (1, 2), (5, 7)):
            ref_days, values = _merged_reference(reference, row, col)
            np.testing.assert_array_equal(ref_days, days)
            np.testing.assert_allclose(patch.s1_bands[:, row, col], values, atol=1e-4)
        # At the shared day, pixel (1, 2) has no S1A VV (NaN): S1D's value alone.
        shared = int(np.flatnonzero(days == reference["s1a_days"][1])[0])
        assert patch.s1_bands[shared, 1, 2, 0] == pytest.approx(reference["s1d"][1, 0, 1, 2])
    # Lazily decoded patches carry the same series.
    lazy = pastis.load_pastis_patches(path, folds=(1, 2, 3), s1="both", lazy=True)
    by_id = {p.patch_id: p for p in patches}
    for patch in lazy[0:3]:
        np.testing.assert_array_equal(patch.s1_bands, by_id[patch.patch_id].s1_bands)
        np.testing.assert_array_equal(patch.s1_dates, by_id[patch.patch_id].s1_dates)


def test_pastis_r_stored_examples_hold_both_orbits(pastis_r_dir):
    path, written = pastis_r_dir
    pastis.prepare_pastis(path)
    source = tfds.data_source("pastis", split="fold2", data_dir=str(path / "tfds"))
    (example,) = [source[i] for i in range(len(source))]  # patch 10007: no S1 files
    assert example["s1a_bands"].shape == (0, 8, 8, 3) and example["s1d_dates"].shape == (0,)
    source = tfds.data_source("pastis", split="fold1", data_dir=str(path / "tfds"))
    (example,) = [source[i] for i in range(len(source))]
    np.testing.assert_array_equal(
        example["s1d_bands"], np.transpose(written["10000"]["s1d"], (0, 2, 3, 1))
    )
    np.testing.assert_array_equal(example["s1a_dates"], written["10000"]["s1a_days"])
    with pytest.raises(ValueError, match="data.s1"):
        pastis.load_pastis_patches(path, folds=(1,), s1="S1B")


def test_pastis_r_norm_statistics_in_db(pastis_r_dir):
    path, _ = pastis_r_dir
    stats = json.loads((path / "NORM_S1D_patch.json").read_text())
    mean, std = pastis.load_pastis_norm(path, folds=(2, 3), sensor="S1D")
    np.testing.assert_allclose(
        mean, (np.array(stats["Fold_2"]["mean"]) + stats["Fold_3"]["mean"]) / 2, rtol=1e-6
    )
    np.testing.assert_allclose(
        std, (np.array(stats["Fold_2"]["std"]) + stats["Fold_3"]["std"]) / 2, rtol=1e-6
    )
    assert mean.shape == (3,) and mean.dtype == np.float32
    with pytest.raises(ValueError, match="sensor"):
        pastis.load_pastis_norm(path, sensor="S3")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda props: props.pop("dates-S1A"), "S1A_10000.npy exists.*dates-S1A"),
        (lambda props: props["dates-S1D"].update({"2": 20170101}), "dates-S1D are not in time"),
        (lambda props: props["dates-S1A"].update({"0": "2018"}), "dates-S1A.*YYYYMMDD"),
    ],
)
def test_pastis_r_bad_metadata(tmp_path, edit, message):
    write_pastis_dir(tmp_path, num_patches=1, size=8, s1=True)
    _rewrite_metadata(tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        pastis.load_pastis_patches(tmp_path, folds=(1,), s1="both")


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 2, 8, 8), np.float32), r"S1A_10000.npy.*\(4, 3, 8, 8\)"),
        (np.zeros((3, 3, 8, 8), np.float32), r"S1A_10000.npy.*dates-S1A"),
        (np.zeros((4, 3, 8, 8), np.int16), "float backscatter"),
    ],
)
def test_pastis_r_bad_s1_arrays_are_named(tmp_path, array, message):
    write_pastis_dir(tmp_path, num_patches=1, size=8, s1=True)  # S1A of patch 10000: 4 dates
    np.save(tmp_path / "DATA_S1A" / "S1A_10000.npy", array)
    with pytest.raises(ValueError, match=message):
        pastis.load_pastis_patches(tmp_path, folds=(1,))
