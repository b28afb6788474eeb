"""Land-cover mapping (``eval_landcover``): splits, the mIoU metric against scikit-learn, and
the task end to end on a PASTIS-R fixture in the official layout and a user patch folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import jaccard_score

from pimc_jax.evaluation.scores import class_iou, confusion_matrix
from pimc_jax.launcher import run
from pimc_jax.segmentation.landcover import LandCoverMapping
from tests.format_writers import write_pastis_dir, write_user_patch_folder
from tests.test_cli import PAIRING_RUNS, pretrain_then_evaluate
from tests.tiny_configs import load_config

S1S2 = {"data.s1": "S1A", "model.views": ("s1_image", "s2_image")}


@pytest.fixture(scope="module")
def pastis_r(tmp_path_factory):
    """Five PASTIS-R patches of 16 × 16 px, one per official fold."""
    root = tmp_path_factory.mktemp("pastis_r")
    return root, write_pastis_dir(root, num_patches=5, size=16, s1=True)


def _config(**overrides):
    config = load_config("eval_landcover:tiny")
    config.update_from_flattened_dict(overrides)
    return config


def test_class_iou_matches_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 300)
    predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 6, 300))
    predictions[predictions == 5] = 4  # class 4 predicted more often than it occurs
    labels[labels == 3] = 2  # class 3 never occurs and is never predicted
    predictions[predictions == 3] = 2
    ious, mean = class_iou(confusion_matrix(labels, predictions, 6))
    present = [0, 1, 2, 4]
    expected = jaccard_score(labels, predictions, labels=present, average=None)
    np.testing.assert_allclose(ious[present], expected)
    assert np.isnan(ious[3]) and np.isnan(ious[5])
    assert mean == pytest.approx(expected.mean())


def test_pastis_r_folds_void_and_metrics(pastis_r, tmp_path):
    root, written = pastis_r
    config = _config(**{"data.name": "pastis", "data.path": str(root), "tower": "both", **S1S2})
    results = run(config, str(tmp_path))
    assert results["views"] == ["s1_image", "s2_image"]
    assert results["data"]["num_patches"] == {"train": 3, "val": 1, "test": 1}
    # Every labelled pixel of the fold-5 patch is scored once; void (19) is not.
    (test_target,) = [w["target"][0] for w in written.values() if w["fold"] == 5]
    confusion = np.asarray(results["confusion_matrix"])
    assert confusion.sum() == np.sum(test_target != 19)
    assert confusion.shape == (19, 19)  # classes 0..18 of PASTIS: void is never a class
    np.testing.assert_array_equal(
        confusion.sum(1), np.bincount(test_target.ravel(), minlength=20)[:19]
    )
    metrics = results["metrics"]
    assert metrics["overall_accuracy_test"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert metrics["miou_test"] == pytest.approx(class_iou(confusion)[1])
    assert results["class_names"][0] == "Background"
    for name in ("results.json", "results.md", "confusion.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metrics"]["miou_test"] == pytest.approx(metrics["miou_test"])


def test_patch_folder_is_split_by_whole_blocks(tmp_path):
    written = write_user_patch_folder(tmp_path / "patches", num_patches=2, size=8)
    config = _config(**{"data.name": "patches", "data.path": str(tmp_path / "patches")})
    config.data.block_size = 4
    config.data.val_fraction = config.data.test_fraction = 0.25
    evaluator = LandCoverMapping(config)
    for split_map in evaluator.split_maps:
        tiles = split_map.reshape(2, 4, 2, 4).transpose(0, 2, 1, 3).reshape(4, 16)
        for tile in tiles:
            assert len(set(tile[tile >= 0].tolist())) <= 1, tile
    codes = np.concatenate([m.ravel() for m in evaluator.split_maps])
    assert {0, 1, 2} <= set(codes.tolist())
    labelled = sum(int(np.sum(w["labels"] >= 0)) for w in written.values())
    assert np.sum(codes >= 0) == labelled  # a user's classes are all kept
    results = evaluator.run(evaluator.random_params())
    assert np.sum(results["confusion_matrix"]) == np.sum(codes == 2)


def test_finetune_on_synthetic_patches(tmp_path):
    results = run(_config(protocol="finetune"), str(tmp_path))
    assert results["protocol"] == "finetune" and "l2" not in results["metrics"]
    assert 0.0 <= results["metrics"]["miou_test"] <= 1.0


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="data.s1='none'"):
        LandCoverMapping(_config(tower="s1_image"))
    with pytest.raises(ValueError, match="finetune' trains one tower"):
        LandCoverMapping(_config(tower="both", protocol="finetune", **S1S2))
    with pytest.raises(ValueError, match="data.name must be one of"):
        LandCoverMapping(_config(**{"data.name": "npz"}))
    with pytest.raises(ValueError, match="folds must be disjoint"):
        LandCoverMapping(_config(val_folds=(3,)))


@pytest.mark.slow
@pytest.mark.parametrize("pretrain_config, tower, protocol", PAIRING_RUNS)
def test_pretrain_then_eval_landcover_from_the_command_line(
    pastis_r, tmp_path, pretrain_config, tower, protocol
):
    root, _ = pastis_r
    data = [f"--config.data.path={root}", "--config.data.name=pastis", "--config.data.s1=S1A"]
    results, _ = pretrain_then_evaluate(
        tmp_path, data, pretrain_config, "eval_landcover:tiny", tower, protocol
    )
    assert 0.0 <= results["metrics"]["miou_test"] <= 1.0
