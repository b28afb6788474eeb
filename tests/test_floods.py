"""Flood segmentation: the Sen1Floods11 reader against the official layout, the synthetic
flood stand-in, and the ``eval_floods`` task end to end."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pimc_jax.data import FLOOD_PRETRAIN_FIRST_SCENE, load_patches
from pimc_jax.data import sen1floods11 as s1f
from pimc_jax.data.sen1floods11 import S1_BANDS, S2_BANDS
from pimc_jax.data.synthetic.floods import (
    FLOOD_EVENTS,
    make_flood_chips,
    make_flood_patches,
    make_flood_scene,
)
from pimc_jax.encode import encode_patch
from pimc_jax.evaluation.towers import tower_features
from pimc_jax.launcher import run
from pimc_jax.models import EncoderSpec, init_params
from pimc_jax.segmentation.dense import chip_features
from pimc_jax.segmentation.heads import finetune_view
from tests.format_writers import SEN1FLOODS11_S2_BANDS, write_sen1floods11_dir
from tests.test_cli import PAIRING_RUNS, pretrain_then_evaluate
from tests.tiny_configs import load_config, perturbed, tiny_model_spec


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


def test_flood_scenes_as_a_pretraining_source():
    config = load_config("pretrain_s1s2:tiny")
    config.data.name = "synthetic_floods"
    patches = load_patches(config.data)
    assert len(patches) == config.data.num_patches and all(p.has_s1 for p in patches)
    # Scenes disjoint from the evaluation's chips (indices below FLOOD_PRETRAIN_FIRST_SCENE).
    assert patches[0].patch_id.endswith(f"_{FLOOD_PRETRAIN_FIRST_SCENE}")


# --------------------------------------------------------------------------------------
# The eval_floods task.


def _eval_config(**overrides):
    config = load_config("eval_floods:tiny")
    config.update_from_flattened_dict(overrides)
    return config


def _check_results(results: dict, workdir) -> None:
    metrics = results["metrics"]
    for key in ("iou_water_valid", "iou_water_test", "iou_water_test_raw_pixels"):
        assert 0.0 <= metrics[key] <= 1.0, key
    tn_fp, fn_tp = results["confusion_matrix"]
    tp, fp, fn = fn_tp[1], tn_fp[1], fn_tp[0]
    assert metrics["iou_water_test"] == pytest.approx(tp / (tp + fp + fn))
    for name in ("results.json", "results.md", "confusion.png", "flood_examples.png"):
        assert (workdir / name).is_file(), name
    markdown = (workdir / "results.md").read_text()
    assert "## Per event (test split)" in markdown and "iou_water_test" in markdown
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["metrics"]["iou_water_test"] == pytest.approx(metrics["iou_water_test"])


def test_eval_floods_synthetic_random_encoder(tmp_path):
    results = run(_eval_config(tower="s2_image"), str(tmp_path))
    _check_results(results, tmp_path)
    assert results["tower"] == "s2_image" and results["data"]["num_train"] == 4
    assert {row["event"] for row in results["tables"]["Per event (test split)"]} <= {
        e.name for e in FLOOD_EVENTS
    }


def test_eval_floods_on_the_official_layout_skips_unlabelled_chips(floods_dir, tmp_path):
    root, written = floods_dir
    config = _eval_config(tower="both", **{"data.name": "sen1floods11", "data.path": str(root)})
    results = run(config, str(tmp_path))
    _check_results(results, tmp_path)
    assert results["data"]["skipped"] == {"train": 1, "valid": 0, "test": 0}
    assert (results["data"]["num_train"], results["data"]["num_test"]) == (3, 2)
    per_split = {row["split"]: row for row in results["tables"]["Per split"]}
    assert per_split["train"]["skipped_no_label"] == 1
    # Every valid test pixel is counted once; label -1 is not.
    valid = sum(int((w["labels"] != -1).sum()) for w in written.values() if w["split"] == "test")
    assert int(np.sum(results["confusion_matrix"])) == valid


def test_eval_floods_errors(tmp_path):
    with pytest.raises(ValueError, match="protocol must be one of"):
        run(_eval_config(protocol="probe"), str(tmp_path))
    with pytest.raises(ValueError, match="finetune' trains one tower"):
        run(_eval_config(protocol="finetune", tower="both"), str(tmp_path))
    with pytest.raises(ValueError, match="tower must be one of"):
        run(_eval_config(tower="s2_rp"), str(tmp_path))
    with pytest.raises(ValueError, match="model.views"):
        run(
            _eval_config(**{"model.views": ("s2_rp", "s2_image"), "tower": "s1_image"}),
            str(tmp_path),
        )
    with pytest.raises(ValueError, match="needs --config.data.path"):
        run(_eval_config(**{"data.name": "sen1floods11"}), str(tmp_path))


def test_dense_features_match_encode_patch_fast_mode():
    """The s2_image tower's dense pass is the ``fast`` mode of ``encode_patch``."""
    spec = tiny_model_spec(
        EncoderSpec(stage_sizes=(1, 1), widths=(8, 8), stem_width=8, norm_groups=4),
        band_names=S2_BANDS,
        image_bands=("B4", "B3", "B2", "B8"),
        image_mean=(0.1, 0.1, 0.1, 0.2),
        image_std=(0.05, 0.05, 0.05, 0.1),
        crop_size=8,
    )
    params = perturbed(init_params(spec, 0))
    chip = make_flood_chips(1, size=20)[0]
    dense = chip_features(params, ("s2_image",), chip, tile_rows=7)
    fast = encode_patch(params, chip.to_patch(), mode="fast")["image_features"]
    np.testing.assert_allclose(dense, fast, rtol=1e-4, atol=1e-4)
    # The same tower reading s1_image as tower 1 runs the rp_encoder's weights.
    s1_spec = dataclasses.replace(
        spec,
        views=("s1_image", "s2_image"),
        s1_band_names=S1_BANDS,
        s1_image_bands=S1_BANDS,
        s1_image_mean=(-12.0, -19.0, 7.0),
        s1_image_std=(4.0, 4.0, 2.0),
    )
    s1_params = perturbed(init_params(s1_spec, 0))
    features = chip_features(s1_params, ("s1_image", "s2_image"), chip)
    assert features.shape == (20, 20, 16) and np.all(np.isfinite(features))


@pytest.mark.slow
@pytest.mark.parametrize("pretrain_config, tower, protocol", PAIRING_RUNS)
def test_pretrain_on_the_official_layout_then_eval_floods_from_the_command_line(
    floods_dir, tmp_path, pretrain_config, tower, protocol
):
    """Both pairings pre-train on the fixture's training chips (data.name=sen1floods11),
    then the flood evaluation scores their tower on the same layout."""
    root, _ = floods_dir
    data = ["--config.data.name=sen1floods11", f"--config.data.path={root}"]
    results, log = pretrain_then_evaluate(
        tmp_path, data, pretrain_config, "eval_floods:tiny", tower, protocol
    )
    assert "data.name=sen1floods11" in log
    _check_results(results, tmp_path / "evaluation")


def test_sen1floods11_as_a_pretraining_source(floods_dir):
    """The train split's labelled chips as one-date patches with both sensors."""
    root, written = floods_dir
    config = load_config("pretrain_s1s2:tiny")
    config.data.update(dict(name="sen1floods11", path=str(root)))
    patches = load_patches(config.data)
    chips = s1f.load_sen1floods11(root, "train")
    assert [p.patch_id for p in patches] == chips.chip_ids
    for patch, chip in zip(patches, chips, strict=True):
        assert patch.num_dates == 1 and patch.has_s1
        np.testing.assert_array_equal(patch.bands[0], chip.s2)
        np.testing.assert_array_equal(patch.s1_bands[0], chip.s1)
    config.data.s1 = "none"
    assert not any(p.has_s1 for p in load_patches(config.data))


def test_finetune_view_learns_and_moves_only_the_view_tower():
    """Crops labelled by the sign of their mean red value: fine-tuning the
    s2_image tower and its head fits them; the other tower's weights do not move."""
    spec = tiny_model_spec(
        EncoderSpec(stage_sizes=(1,), widths=(8,), stem_width=8, norm_groups=4), crop_size=5
    )
    params = init_params(spec, 0)
    rng = np.random.default_rng(0)
    crops = rng.normal(size=(256, 5, 5, 3)).astype(np.float32)
    labels = (crops[..., 0].mean((1, 2)) > 0).astype(np.int32)
    config = load_config("eval_floods")
    config.finetune.update(dict(steps=150, eval_every_steps=0, warmup_steps=5))
    tuned, heads = finetune_view(params, "s2_image", crops, labels, 2, config)
    assert heads.num_heads == 1 and heads.l2 == ()
    features = tower_features(spec, "image")(tuned.variables, {"image": jnp.asarray(crops)})
    accuracy = np.mean(heads.logits(np.asarray(features))[0].argmax(-1) == labels)
    assert accuracy > 0.9, accuracy
    before, after = params.variables["params"], tuned.variables["params"]
    moved = lambda name: max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree.leaves(before[name]), jax.tree.leaves(after[name]), strict=True)
    )
    assert moved("image_encoder") > 1e-3
    assert moved("rp_encoder") < 1e-6  # rounding of the weight average only


def test_eval_floods_finetune_end_to_end(tmp_path):
    results = run(_eval_config(protocol="finetune", tower="s1_image"), str(tmp_path))
    _check_results(results, tmp_path)
    assert results["protocol"] == "finetune" and "l2" not in results["metrics"]
    # Every valid test pixel is counted once.
    valid = sum(int(chip.valid.sum()) for chip in make_flood_chips(3, size=24, first_index=6))
    assert int(np.sum(results["confusion_matrix"])) == valid
