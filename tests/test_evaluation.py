"""Tests for pimc_jax.evaluation: metrics and probes against independent references, and every
eval config end to end on a tiny pre-training run (in-process and through the launch.py CLI).

References: hand-computed confusion matrices and F1 values, scikit-learn (``f1_score``,
``LogisticRegression``, ``Ridge``), NumPy formulas for RMSE, vegetation indices and z-scores.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import ml_collections
import numpy as np
import pytest
import scipy.special
from format_writers import (
    write_eurosat_archives,
    write_pastis_dir,
    write_user_npz,
    write_user_patch_folder,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score
from tiny_configs import ROOT, load_config, tiny_pretrain_config

from pimc_jax import launcher
from pimc_jax.data.splits import stratified_folds, stratified_split
from pimc_jax.data.user import load_pixel_npz
from pimc_jax.evaluation import classification
from pimc_jax.evaluation.classification import ensemble_parts
from pimc_jax.evaluation.encoders import load_encoder
from pimc_jax.evaluation.finetune import class_weights, train_supervised
from pimc_jax.evaluation.forecasting import forecast_windows
from pimc_jax.evaluation.pixel_classification import PixelClassification
from pimc_jax.evaluation.pixels import load_pixel_splits, series_inputs
from pimc_jax.evaluation.probes import fit_logistic_regression, fit_ridge, ridge_probe
from pimc_jax.evaluation.scores import classification_metrics, confusion_matrix, rmse
from pimc_jax.evaluation.towers import predict, tower_forward
from pimc_jax.indices import DEFAULT_IMAGE_BANDS

TOTAL_STEPS = 6
CHECKPOINT_EVERY = 3


def eval_config(name: str, init_from: str, protocol: str) -> ml_collections.ConfigDict:
    """``configs/<name>.py:tiny``: the tiny model (for ``random``), tiny data, few steps."""
    config = load_config(f"{name}:tiny")
    config.init_from = init_from
    config.protocol = protocol
    return config


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory) -> Path:
    """A 6-step tiny pre-training on the forced 4 CPU devices, checkpoints at steps 3 and 6."""
    workdir = tmp_path_factory.mktemp("pretrain")
    config = tiny_pretrain_config(total_steps=TOTAL_STEPS, checkpoint_every_steps=CHECKPOINT_EVERY)
    launcher.run(config, str(workdir))
    return workdir


def read_results(workdir: Path) -> dict:
    assert (workdir / "results.md").is_file()
    return json.loads((workdir / "results.json").read_text())


def check_classification(results: dict, num_classes: int) -> None:
    metrics = results["metrics"]
    assert 0.0 <= metrics["overall_accuracy"] <= 1.0
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert results["per_class"], "per-class table missing"
    rows = results["per_class"]
    assert {"class", "name", "precision", "recall", "f1", "support"} <= set(rows[0])
    assert all(0 <= row["class"] < num_classes for row in rows)
    assert sum(row["support"] for row in rows) == results["data"]["num_test"]
    # Overall accuracy is the support-weighted mean recall.
    weighted = sum(r["recall"] * r["support"] for r in rows) / results["data"]["num_test"]
    assert metrics["overall_accuracy"] == pytest.approx(weighted)


# --------------------------------------------------------------------------------------
# Metrics and probes.


def test_confusion_matrix_and_macro_f1_hand_values():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    predictions = np.array([0, 0, 1, 1, 3, 2, 0, 2])
    confusion = confusion_matrix(labels, predictions, num_classes=5)
    expected = np.zeros((5, 5), np.int64)
    expected[0, :2] = [2, 1]
    expected[1, [1, 3]] = [1, 1]
    expected[2, [0, 2]] = [1, 2]
    np.testing.assert_array_equal(confusion, expected)
    scores = classification_metrics(confusion, ["a", "b", "c", "d", "e"])
    # Class 0: P = 2/3, R = 2/3; class 1: P = 1/2, R = 1/2; class 2: P = 1, R = 2/3, F1 = 0.8;
    # class 3: predicted once, never true → F1 0; class 4 absent → not averaged.
    f1 = [2 / 3, 1 / 2, 0.8, 0.0]
    assert scores["overall_accuracy"] == pytest.approx(5 / 8)
    assert scores["macro_f1"] == pytest.approx(np.mean(f1))
    assert scores["macro_f1"] == pytest.approx(f1_score(labels, predictions, average="macro"))
    assert [row["class"] for row in scores["per_class"]] == [0, 1, 2, 3]
    assert [row["support"] for row in scores["per_class"]] == [3, 2, 3, 0]
    assert scores["per_class"][2]["precision"] == pytest.approx(1.0)
    assert scores["per_class"][2]["f1"] == pytest.approx(0.8)
    assert scores["per_class"][1]["name"] == "b"


def test_confusion_matrix_rejects_out_of_range():
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix([0, 1], [0, 3], num_classes=3)


def test_rmse_matches_numpy():
    rng = np.random.default_rng(0)
    predictions, targets = rng.normal(size=(2, 7, 10, 3))
    expected = [math.sqrt(np.mean((predictions[..., k] - targets[..., k]) ** 2)) for k in range(3)]
    np.testing.assert_allclose(rmse(predictions, targets), expected, rtol=1e-12)
    np.testing.assert_allclose(rmse([[1.0, 2.0]], [[4.0, -2.0]]), [3.0, 4.0])


def test_logistic_regression_matches_sklearn():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 6)).astype(np.float32)
    labels = np.argmax(features[:, :4] + rng.normal(size=(300, 4)), axis=1)
    l2 = 1e-2
    weights, bias = fit_logistic_regression(features, labels, 4, l2=l2, steps=100)
    reference = LogisticRegression(C=1 / (2 * len(labels) * l2), tol=1e-10, max_iter=10_000)
    reference.fit(features, labels)
    logits = features @ weights + bias
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, reference.predict_proba(features), atol=1e-4)


def test_ridge_matches_sklearn():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(50, 5))
    targets = features @ rng.normal(size=(5, 3)) + 0.1 * rng.normal(size=(50, 3)) + 2.0
    weights, bias = fit_ridge(features, targets, l2=0.3)
    reference = Ridge(alpha=0.3 * 50).fit(features, targets)
    np.testing.assert_allclose(weights, reference.coef_.T, rtol=1e-8)
    np.testing.assert_allclose(bias, reference.intercept_, rtol=1e-8)


def test_probes_pick_l2_on_validation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4))
    y = x @ np.array([[1.0], [-2.0], [0.5], [0.0]])
    probe = ridge_probe((x[:100], y[:100]), (x[100:150], y[100:150]), x[150:], l2_grid=(10.0, 1e-6))
    assert probe["l2"] == 1e-6  # noise-free targets: the weakest penalty wins
    np.testing.assert_allclose(probe["test_predictions"], y[150:], atol=1e-3)


def test_stratified_split_is_disjoint_and_stratified():
    labels = np.repeat([0, 1, 2], [10, 20, 30])
    val, test, train = stratified_split(labels, [0.2, 0.3], seed=0)
    assert np.intersect1d(val, test).size == np.intersect1d(val, train).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([val, test, train])), np.arange(60))
    assert np.bincount(labels[val]).tolist() == [2, 4, 6]
    assert np.bincount(labels[test]).tolist() == [3, 6, 9]


def test_forecast_windows_against_numpy():
    rng = np.random.default_rng(4)
    num_dates = 12
    band_names = ("B2", "B4", "B8")
    bands = rng.uniform(0.02, 0.5, size=(3, num_dates, 3)).astype(np.float32)
    dates = np.cumsum(rng.integers(3, 9, size=(3, num_dates)), axis=1).astype(np.float32)
    mask = np.ones((3, num_dates), bool)
    bands[0, 2, 1] = np.nan  # pixel 0 loses date 2 → 11 valid dates
    mask[1, 5:] = False  # pixel 1 has 5 dates → skipped (needs 4 + 3 = 7)
    windows = forecast_windows(
        bands, dates, mask, band_names, indices=("ndvi", "savi"), input_length=4, horizon=3
    )
    np.testing.assert_array_equal(windows["pixel"], [0, 2])
    blue, red, nir = bands[..., 0], bands[..., 1], bands[..., 2]
    ndvi = (nir - red) / (nir + red)
    savi = 1.5 * (nir - red) / (nir + red + 0.5)
    for row, pixel in enumerate([0, 2]):
        keep = [t for t in range(num_dates) if np.isfinite(bands[pixel, t]).all()][:7]
        series = np.stack([ndvi[pixel, keep], savi[pixel, keep]], axis=-1).astype(np.float64)
        mean, std = series[:4].mean(0), series[:4].std(0)
        z = (series - mean) / std
        np.testing.assert_allclose(windows["inputs"][row], z[:4], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(windows["targets"][row], z[4:], rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(windows["dates"][row], dates[pixel, keep[:4]])
        np.testing.assert_array_equal(windows["bands"][row], bands[pixel, keep[:4]])
    assert windows["mask"].all()
    del blue


def test_load_encoder_rejects_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_encoder(str(tmp_path / "nowhere"), lambda: None)
    with pytest.raises(ValueError, match="init_from"):
        load_encoder("", lambda: None)


# --------------------------------------------------------------------------------------
# End to end on a tiny pre-training.


def test_pixel_classification_linear_from_workdir(pretrain_dir, tmp_path):
    config = eval_config("eval_pastis_classification", str(pretrain_dir), "linear")
    returned = launcher.run(config, str(tmp_path))
    results = read_results(tmp_path)
    assert results["metrics"] == pytest.approx(returned["metrics"])
    assert results["step"] == TOTAL_STEPS
    assert results["checkpoint"] == str(pretrain_dir / "checkpoints" / str(TOTAL_STEPS))
    assert results["protocol"] == "linear" and results["task"] == "eval_pastis_classification"
    assert results["config"]["init_from"] == str(pretrain_dir)
    assert results["num_devices"] == 4
    check_classification(results, num_classes=8)
    assert all(row["class"] != 0 for row in results["per_class"])  # background excluded
    assert "| class | name | precision | recall | F1 | support |" in (
        (tmp_path / "results.md").read_text()
    )


def test_pixel_classification_finetune_from_step_dir(pretrain_dir, tmp_path):
    step_dir = pretrain_dir / "checkpoints" / "3"
    config = eval_config("eval_pastis_classification", str(step_dir), "finetune")
    launcher.run(config, str(tmp_path))
    results = read_results(tmp_path)
    assert results["step"] == 3 and results["protocol"] == "finetune"
    check_classification(results, num_classes=8)


def test_forecast_linear_random_and_finetune_pretrained(pretrain_dir, tmp_path):
    config = eval_config("eval_pastis_forecast", "random", "linear")
    config.forecast.cnn_baseline = False
    launcher.run(config, str(tmp_path / "random"))
    random = read_results(tmp_path / "random")
    assert random["step"] is None and random["checkpoint"] is None
    config = eval_config("eval_pastis_forecast", str(pretrain_dir), "finetune")
    launcher.run(config, str(tmp_path / "pretrained"))
    tuned = read_results(tmp_path / "pretrained")
    for results in (random, tuned):
        metrics = results["metrics"]
        for prefix in ("", "ridge_1d_", "zero_"):
            values = [metrics[f"{prefix}rmse_{name}"] for name in ("ndvi", "evi", "savi")]
            assert all(np.isfinite(values)) and min(values) > 0
            assert metrics[f"{prefix}rmse_mean"] == pytest.approx(np.mean(values))
        assert results["data"]["num_test"] > 0
    assert "cnn_1d_rmse_ndvi" in tuned["metrics"] and "cnn_1d_rmse_ndvi" not in random["metrics"]
    # Encoder-free baselines do not depend on the encoder.
    assert tuned["metrics"]["ridge_1d_rmse_evi"] == random["metrics"]["ridge_1d_rmse_evi"]
    assert set(tuned["rmse_by_model"]) == {"pimc", "ridge_1d", "zero", "cnn_1d"}


def test_eurosat_synthetic_linear_and_finetune(pretrain_dir, tmp_path):
    config = eval_config("eval_eurosat", str(pretrain_dir), "linear")
    launcher.run(config, str(tmp_path / "linear"))
    check_classification(read_results(tmp_path / "linear"), num_classes=10)
    config = eval_config("eval_eurosat", "random", "finetune")
    launcher.run(config, str(tmp_path / "finetune"))
    results = read_results(tmp_path / "finetune")
    check_classification(results, num_classes=10)
    # image_bands "auto": B4, B3, B2, B8 of the 13 bands.
    assert results["data"]["image_shape"] == [16, 16, len(DEFAULT_IMAGE_BANDS)]


def test_eurosat_archives(tmp_path):
    write_eurosat_archives(tmp_path / "eurosat", per_class=5)
    config = eval_config("eval_eurosat", "random", "linear")
    config.data.update(dict(name="eurosat", path=str(tmp_path / "eurosat"), eurosat_variant="all"))
    launcher.run(config, str(tmp_path / "all"))
    results = read_results(tmp_path / "all")
    assert (results["data"]["num_train"], results["data"]["num_test"]) == (30, 10)
    # The encoder's bands picked by name from the 13 (B8A last); reflectance like pre-training.
    assert results["data"]["image_shape"] == [64, 64, len(DEFAULT_IMAGE_BANDS)]
    assert results["data"]["image_normalization"] == "checkpoint"
    check_classification(results, num_classes=10)

    config.data.eurosat_variant = "rgb"
    with pytest.raises(ValueError, match="B8"):  # the default image bands include NIR
        launcher.run(config, str(tmp_path / "rgb"))
    config.data.image_bands = ("B4", "B3", "B2")
    launcher.run(config, str(tmp_path / "rgb"))
    results = read_results(tmp_path / "rgb")
    assert results["data"]["image_shape"] == [64, 64, 3]
    assert results["data"]["image_normalization"] == "train_split"  # 8-bit JPEG values


def test_pixel_classification_user_npz_and_pastis(tmp_path):
    write_user_npz(tmp_path / "pixels.npz", num_pixels=60, num_dates=8, num_classes=3)
    write_user_npz(tmp_path / "test.npz", num_pixels=15, num_dates=8, num_classes=3, seed=1)
    config = eval_config("eval_pastis_classification", "random", "linear")
    config.data.update(dict(name="npz", path=str(tmp_path / "pixels.npz")))
    config.exclude_classes = ()
    launcher.run(config, str(tmp_path / "split"))
    results = read_results(tmp_path / "split")
    assert sum(results["data"][f"num_{s}"] for s in ("train", "val", "test")) == 60
    assert results["per_class"][0]["name"].startswith("class_")
    config.data.test_path = str(tmp_path / "test.npz")
    launcher.run(config, str(tmp_path / "test_file"))
    assert read_results(tmp_path / "test_file")["data"]["num_test"] == 15

    # A patch folder without folds, two 8-px patches: fewer than 3 spatial blocks, so a
    # seeded stratified split of its labelled pixels (blocks: test_sampling.py).
    write_user_patch_folder(tmp_path / "patches", num_patches=2, size=8)
    (tmp_path / "patches" / "classes.json").write_text(json.dumps({"1": "wheat", "3": "maize"}))
    config = eval_config("eval_pastis_classification", "random", "linear")
    config.data.update(dict(name="patches", path=str(tmp_path / "patches")))
    launcher.run(config, str(tmp_path / "patches_eval"))
    results = read_results(tmp_path / "patches_eval")
    assert sum(results["data"][f"num_{s}"] for s in ("train", "val", "test")) == 24
    check_classification(results, num_classes=5)
    names = {row["class"]: row["name"] for row in results["per_class"]}
    assert names[1] == "wheat" and names[3] == "maize"
    assert all(name == str(code) for code, name in names.items() if code not in (1, 3))

    write_pastis_dir(tmp_path / "pastis", num_patches=5, size=16)
    config = eval_config("eval_pastis_classification", "random", "linear")
    config.data.update(dict(name="pastis", path=str(tmp_path / "pastis"), max_dates=16))
    launcher.run(config, str(tmp_path / "pastis_eval"))
    results = read_results(tmp_path / "pastis_eval")
    check_classification(results, num_classes=20)
    assert all(row["class"] not in (0, 19) for row in results["per_class"])


def test_poll_evaluates_every_checkpoint(pretrain_dir, tmp_path):
    config = eval_config("eval_pastis_classification", str(pretrain_dir), "linear")
    config.poll = True
    config.poll_interval_s = 0.1
    config.poll_timeout_s = 30.0
    launcher.run(config, str(tmp_path))
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    steps = list(range(CHECKPOINT_EVERY, TOTAL_STEPS + 1, CHECKPOINT_EVERY))
    assert [entry["step"] for entry in history] == steps
    assert read_results(tmp_path / "steps" / "3")["step"] == 3
    assert read_results(tmp_path)["step"] == TOTAL_STEPS


def test_poll_stops_at_an_unreadable_final_checkpoint(pretrain_dir, tmp_path):
    """A corrupt final step is an error at once, not an hour's wait and an exit 0."""
    source = tmp_path / "pretrain"
    shutil.copytree(pretrain_dir, source)
    params = source / "checkpoints" / str(TOTAL_STEPS) / "params" / "d"
    data = max((p for p in params.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    config = eval_config("eval_pastis_classification", str(source), "linear")
    config.poll = True
    config.poll_interval_s = 0.1
    config.poll_timeout_s = 3600.0
    start = time.monotonic()
    with pytest.raises(ValueError, match=f"final checkpoint \\(step {TOTAL_STEPS}\\)"):
        launcher.run(config, str(tmp_path / "eval"))
    assert time.monotonic() - start < 600
    history = (tmp_path / "eval" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in history] == [CHECKPOINT_EVERY]


def test_cli_restores_four_device_checkpoint_on_one_device(pretrain_dir, tmp_path):
    """The README command path, in a fresh process that has a single CPU device."""
    config = eval_config("eval_pastis_classification", str(pretrain_dir), "linear")
    launcher.run(config, str(tmp_path / "in_process"))
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join(
        flag
        for flag in env.get("XLA_FLAGS", "").split()
        if not flag.startswith("--xla_force_host_platform_device_count")
    )
    env["JAX_PLATFORMS"] = "cpu"
    command = [
        sys.executable,
        "launch.py",
        "--config=configs/eval_pastis_classification.py:tiny",
        f"--config.init_from={pretrain_dir}",
        f"--workdir={tmp_path / 'cli'}",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = read_results(tmp_path / "cli")
    assert results["num_devices"] == 1
    assert results["step"] == TOTAL_STEPS
    # Same parameters restored on 1 device as on 4: the same probe results.
    expected = read_results(tmp_path / "in_process")["metrics"]
    assert results["metrics"] == pytest.approx(expected, abs=1e-6)


def test_stratified_folds_partition_and_balance():
    labels = np.repeat(np.arange(4), [23, 7, 3, 11])
    folds = stratified_folds(labels, 5, seed=2)
    joined = np.concatenate(folds)
    np.testing.assert_array_equal(np.sort(joined), np.arange(labels.size))  # disjoint, complete
    counts = np.stack([np.bincount(labels[f], minlength=4) for f in folds])
    assert (counts.max(axis=0) - counts.min(axis=0) <= 1).all()  # each class spread evenly
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert [list(f) for f in stratified_folds(labels, 5, seed=2)] == [list(f) for f in folds]


def test_cross_fitted_ensemble_holds_each_pixel_out_once(tmp_path, monkeypatch):
    labels = np.repeat(np.arange(3), [9, 5, 6])
    parts = ensemble_parts(labels, 3, seed=1)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(labels.size))
    for members in (0, 1, 11, True):
        with pytest.raises(ValueError, match="ensemble_members"):
            ensemble_parts(labels, members, seed=1)

    # Through the CLI: three members, each trained on all train + val pixels but its part
    # and keeping its best step on that part.
    write_user_npz(tmp_path / "pixels.npz", num_pixels=60, num_dates=8, num_classes=3)
    config = eval_config("eval_pastis_classification", "random", "finetune")
    config.data.update(dict(name="npz", path=str(tmp_path / "pixels.npz")))
    config.finetune.ensemble_members = 3
    calls = []

    def spy(*args, **kwargs):
        calls.append((len(args[3]), len(kwargs["validation"][1])))
        return train_supervised(*args, **kwargs)

    monkeypatch.setattr(classification, "train_supervised", spy)
    launcher.run(config, str(tmp_path / "ensemble"))
    results = read_results(tmp_path / "ensemble")
    pool = results["data"]["num_train"] + results["data"]["num_val"]
    assert len(calls) == 3
    assert sum(held for _, held in calls) == pool  # the held-out parts partition the pool
    assert all(fit + held == pool for fit, held in calls)

    # The test predictions are the argmax of the members' mean class probabilities.
    evaluator = PixelClassification(config)
    params, splits = evaluator.random_params(), evaluator.splits
    members = []
    monkeypatch.setattr(
        classification,
        "train_supervised",
        lambda *a, **k: members.append(train_supervised(*a, **k)) or members[-1],
    )
    out = classification.classify(
        config,
        params,
        "rp",
        (splits.train, splits.val, splits.test),
        splits.num_classes,
        features_fn=None,
        inputs_fn=series_inputs,
        band_names=splits.band_names,
    )
    forward = tower_forward(params.spec, "rp", splits.band_names)
    logits = [predict(forward, p, series_inputs(splits.test)) for p in members]
    mean = np.mean([scipy.special.softmax(x.astype(np.float64), axis=-1) for x in logits], axis=0)
    assert len(members) == 3
    np.testing.assert_array_equal(out["test_predictions"], np.argmax(mean, -1))
    check_classification(results, num_classes=3)
    assert 0.0 <= results["metrics"]["val_accuracy"] <= 1.0


def test_class_weights_match_sklearn_balanced():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.repeat([0, 2, 3], [50, 5, 20])
    balanced = compute_class_weight("balanced", classes=np.array([0, 2, 3]), y=labels)
    got = class_weights(labels, 5, "inverse")
    np.testing.assert_allclose(got[[0, 2, 3]], balanced, rtol=1e-6)
    assert got[1] == got[4] == 0  # absent classes
    sqrt = class_weights(labels, 5, "sqrt_inverse")
    expected = np.array([50, 5, 20]) ** -0.5
    np.testing.assert_allclose(sqrt[[0, 2, 3]], expected * 75 / (expected * [50, 5, 20]).sum())
    np.testing.assert_array_equal(class_weights(labels, 5, "none")[[0, 2, 3]], 1.0)


def _linear_regression_fit(seed: int, initial_w: float, steps: int):
    """32 random 3-d inputs, noise-free linear targets, and ``train_supervised`` of a linear
    model from ``w = initial_w`` on them (MSE, plain SGD steps) awaiting its keyword options."""
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.normal(size=(32, 3)).astype(np.float32)}
    targets = (inputs["x"] @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
    fit = functools.partial(
        train_supervised,
        lambda params, batch: batch["x"] @ params["w"],
        {"w": np.full((3, 1), initial_w, np.float32)},
        inputs,
        targets,
        loss="mse",
        steps=steps,
        batch_size=8,
        learning_rate=0.05,
        weight_decay=0.0,
        warmup_steps=0,
        seed=0,
    )
    return inputs, targets, fit


def test_train_supervised_keeps_the_best_validation_step():
    inputs, targets, fit = _linear_regression_fit(seed=0, initial_w=0.0, steps=20)
    selected = functools.partial(fit, validation=(inputs, targets), eval_every_steps=4)
    seen = []

    def prefers_the_second_check(outputs, y):
        seen.append(np.array(outputs))
        return 1.0 if len(seen) == 2 else 0.0

    chosen = selected(score_fn=prefers_the_second_check)
    assert len(seen) == 5  # steps 4, 8, 12, 16, 20
    # The returned parameters are those scored at the second check (step 8).
    np.testing.assert_allclose(inputs["x"] @ np.asarray(chosen["w"]), seen[1], rtol=1e-6)
    last = fit()
    np.testing.assert_allclose(inputs["x"] @ np.asarray(last["w"]), seen[-1], rtol=1e-6)
    assert not np.allclose(seen[1], seen[-1])
    # Ties keep the latest; the default score is minus the validation loss.
    tied = selected(score_fn=lambda outputs, y: 0.0)
    np.testing.assert_allclose(tied["w"], last["w"], rtol=1e-6)
    best_loss = selected()  # the loss falls all the way on this convex problem: the last step
    np.testing.assert_allclose(best_loss["w"], last["w"], rtol=1e-6)


def _linear(params, batch):
    return batch["x"] @ params["w"]


def test_train_supervised_compiles_one_step_for_sets_of_nearly_one_size():
    """Ensemble members train on sets that differ by a row or two: one compiled step."""
    from pimc_jax.evaluation import finetune

    rng = np.random.default_rng(3)
    x = rng.normal(size=(31, 3)).astype(np.float32)
    targets = (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
    settings = dict(loss="mse", steps=3, batch_size=8, learning_rate=0.05)
    settings.update(weight_decay=0.0, warmup_steps=0, seed=0)
    initial = {"w": np.zeros((3, 1), np.float32)}
    before = finetune._training_step.cache_info()
    fits = [
        train_supervised(_linear, initial, {"x": x[:rows]}, targets[:rows], **settings)
        for rows in (30, 31)
    ]
    after = finetune._training_step.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    key = (_linear, "mse", None, (0.05, None, 0.0), (3, 0), None, 0.0, 0.0)
    _, step = finetune._training_step(*key)  # the call train_supervised made
    assert step._cache_size() == 1  # 30 and 31 rows padded to one shape
    assert not np.allclose(fits[0]["w"], 0.0) and not np.allclose(fits[0]["w"], fits[1]["w"])


def test_train_supervised_label_smoothing_fits_the_smoothed_class_frequencies():
    """A bias-only classifier's cross-entropy optimum is softmax(b) = the mean target: with
    smoothing ε over K classes, (1 − ε)·(class frequencies) + ε / K."""
    labels = np.repeat([0, 1, 2], [10, 6, 4])
    fit = functools.partial(
        train_supervised,
        lambda params, batch: params["b"] + 0.0 * batch["x"],
        {"b": np.zeros((3,), np.float32)},
        {"x": np.zeros((20, 1), np.float32)},
        labels,
        loss="cross_entropy",
        steps=400,
        batch_size=20,
        learning_rate=0.1,
        weight_decay=0.0,
        warmup_steps=0,
        seed=0,
    )
    frequencies = np.array([10, 6, 4]) / 20
    for epsilon in (0.0, 0.3):
        probabilities = scipy.special.softmax(np.asarray(fit(label_smoothing=epsilon)["b"]))
        np.testing.assert_allclose(
            probabilities, (1 - epsilon) * frequencies + epsilon / 3, atol=2e-3
        )
    with pytest.raises(ValueError, match="label_smoothing"):
        fit(label_smoothing=1.0)


def test_npz_keeps_every_class_and_cv_fold_splits(tmp_path):
    write_user_npz(tmp_path / "pixels.npz", num_pixels=50, num_dates=6, num_classes=3)
    config = eval_config("eval_pastis_classification", "random", "linear")
    config.data.update(dict(name="npz", path=str(tmp_path / "pixels.npz"), cv_folds=5))
    labels = load_pixel_npz(tmp_path / "pixels.npz").labels
    seen = []
    for fold in range(5):
        config.data.cv_fold = fold
        splits = load_pixel_splits(config)
        assert set(np.unique(splits.train["labels"])) == set(np.unique(labels))  # 0 kept
        assert (
            len(splits.train["labels"]) + len(splits.val["labels"]) + len(splits.test["labels"])
            == labels.size
        )
        seen.append(splits.test["bands"])
    # The five test folds hold every pixel once.
    assert sum(len(s) for s in seen) == labels.size
    config.exclude_classes = (0,)
    assert 0 not in load_pixel_splits(config).train["labels"]


def test_train_supervised_ema_is_the_bias_corrected_average_of_the_steps():
    inputs, targets, fit = _linear_regression_fit(seed=1, initial_w=0.3, steps=6)
    outputs = []  # x @ w_t after every step t of the plain run (outputs are linear in w)
    fit(
        validation=(inputs, targets),
        eval_every_steps=1,
        score_fn=lambda out, y: outputs.append(np.array(out)) or 0.0,
    )
    decay = 0.8
    ema = inputs["x"] @ np.full((3, 1), 0.3)  # the NumPy reference, from the initial w
    for step_outputs in outputs:
        ema = decay * ema + (1 - decay) * step_outputs
    initial = inputs["x"] @ np.full((3, 1), 0.3)
    expected = (ema - decay ** len(outputs) * initial) / (1 - decay ** len(outputs))
    averaged = fit(ema_decay=decay)
    np.testing.assert_allclose(inputs["x"] @ np.asarray(averaged["w"]), expected, rtol=1e-5)
    assert not np.allclose(expected, outputs[-1], rtol=1e-3)
    with pytest.raises(ValueError, match="ema_decay"):
        fit(ema_decay=1.0)


def test_npz_scl_setting_reaches_the_pixel_evaluations(tmp_path):
    write_user_npz(tmp_path / "pixels.npz", num_pixels=20, num_dates=6, num_classes=2)
    with np.load(tmp_path / "pixels.npz") as stored:
        arrays = dict(stored)
    scl = np.full(arrays["labels"].shape + (6,), 4, np.uint8)  # 4: vegetation
    scl[:, 2] = 9  # cloud high probability at date 2 of every pixel
    scl[:, 4] = 11  # snow at date 4
    np.savez(tmp_path / "pixels.npz", **arrays, scl=scl)
    config = eval_config("eval_pastis_classification", "random", "linear")
    config.data.update(dict(name="npz", path=str(tmp_path / "pixels.npz")))

    def gaps() -> np.ndarray:
        splits = load_pixel_splits(config)
        bands = np.concatenate([s["bands"] for s in (splits.train, splits.val, splits.test)])
        return np.isnan(bands).all(axis=(0, 2))  # dates that are gaps in every pixel

    default = gaps()
    assert default[2] and not default[4]  # cloud masked, snow kept by default
    config.data.scl_invalid_classes = (9, 11)
    assert gaps()[4]
    config.data.scl_invalid_classes = ()
    assert not gaps()[2]


def test_tower_functions_are_reused_so_their_compiled_code_is(tiny_params):
    """Equal arguments give the same forward function and the same jitted wrapper, so a
    second split or a polled checkpoint of one spec compiles nothing new."""
    from pimc_jax.evaluation import towers

    spec = tiny_params.spec
    first = towers.tower_features(spec, "rp")
    assert towers.tower_features(spec, "rp", spec.band_names) is first
    assert towers.tower_forward(spec, "rp") is towers.tower_forward(spec, "rp")
    assert towers.tower_features(spec, "image") is not first
    assert towers._jitted(first) is towers._jitted(first)
