"""The README's command path end to end: ``python launch.py --config=... --config.X=...`` run as
a fresh process (one CPU device) on tiny datasets written in the official on-disk formats.

One PASTIS pre-training (module fixture) feeds the three evaluations; user pixel files and
patch folders go through the same command; bad input must exit non-zero with a clear
message. References: the fixture writers' own arrays (folds, classes, split lists, pixel
counts), ln(batch) for the InfoNCE loss of an untrained model, and a NumPy re-computation
of the zero forecast's RMSE from the vegetation-index formulas.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from format_writers import (
    EUROSAT_CLASSES,
    write_eurosat_archives,
    write_pastis_dir,
    write_user_npz,
    write_user_patch_folder,
)
from tiny_configs import ROOT, one_cpu_env

PRETRAIN_STEPS = 4
BATCH = 16
PASTIS_FOLDS = ("--config.train_folds=(1,)", "--config.val_folds=(2,)", "--config.test_folds=(3,)")
PIXELS_PER_PATCH = 48
LINEAR = ("--config.linear.steps=30", "--config.linear.l2_grid=(0.001, 0.1)")
FINETUNE = (
    "--config.finetune.steps=3",
    "--config.finetune.batch_size=16",
    "--config.finetune.warmup_steps=1",
    "--config.finetune.log_every_steps=1",
)
# The fixture series have 4..9 dates: forecast 2 steps from 3.
INPUT_LENGTH, HORIZON = 3, 2
FORECAST = (
    f"--config.forecast.input_length={INPUT_LENGTH}",
    f"--config.forecast.horizon={HORIZON}",
    "--config.data.max_dates=16",
)


# --------------------------------------------------------------------------------------
# Running launch.py.


def launch(config: str, workdir: Path | None, *flags: str) -> subprocess.CompletedProcess:
    """``python launch.py --config=configs/<name>.py[:arg] FLAGS --workdir=WORKDIR`` on one CPU
    (``config`` = ``name[:arg]``)."""
    name, colon, arg = config.partition(":")
    command = [sys.executable, "launch.py", f"--config=configs/{name}.py{colon}{arg}", *flags]
    if workdir is not None:
        command.append(f"--workdir={workdir}")
    return subprocess.run(
        command, cwd=ROOT, env=one_cpu_env(), capture_output=True, text=True, timeout=300
    )


def launch_ok(config: str, workdir: Path, *flags: str) -> dict:
    """Runs launch.py, asserts success; returns ``results.json`` (evaluations) or ``{}``."""
    done = launch(config, workdir, *flags)
    assert done.returncode == 0, done.stderr[-4000:]
    results = workdir / "results.json"
    if not results.exists():
        return {}
    assert (workdir / "results.md").is_file()
    return json.loads(results.read_text())


# The image-tower pairings and how their towers are scored after pre-training from the
# command line: (pre-training config, evaluated tower, protocol).
PAIRING_RUNS = [
    ("pretrain_s1s2:tiny", "s1_image", "linear"),
    ("pretrain_augment:tiny", "s2_image", "finetune"),
]


def pretrain_then_evaluate(
    tmp_path: Path,
    data: list[str],
    pretrain_config: str,
    evaluation: str,
    tower: str,
    protocol: str,
) -> tuple[dict, str]:
    """``pretrain_config`` on ``data`` (16-px patches), then ``evaluation`` of its ``tower``
    on the same data, both through launch.py; the results and the pre-training's log."""
    pretrain = tmp_path / "pretrain"
    done = launch(pretrain_config, pretrain, *data, "--config.data.patch_size=16")
    assert done.returncode == 0, done.stderr[-3000:]
    results = launch_ok(
        evaluation,
        tmp_path / "evaluation",
        *data,
        f"--config.init_from={pretrain}",
        f"--config.tower={tower}",
        f"--config.protocol={protocol}",
    )
    assert results["step"] == 6 and results["views"] == [tower]
    return results, done.stderr


def check_classification(results: dict, num_test: int) -> None:
    metrics = results["metrics"]
    assert set(metrics) >= {"overall_accuracy", "macro_f1", "val_accuracy", "linear_l2"}
    for name in ("overall_accuracy", "macro_f1", "val_accuracy"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["linear_l2"] in (0.001, 0.1)
    assert results["data"]["num_test"] == num_test
    rows = results["per_class"]
    assert sum(row["support"] for row in rows) == num_test
    assert all(0.0 <= row[k] <= 1.0 for row in rows for k in ("precision", "recall", "f1"))
    # Overall accuracy is the support-weighted mean recall.
    weighted = sum(row["recall"] * row["support"] for row in rows) / num_test
    assert metrics["overall_accuracy"] == pytest.approx(weighted)


def check_forecast(results: dict, models: tuple[str, ...]) -> None:
    metrics = results["metrics"]
    assert set(results["rmse_by_model"]) == {"pimc", *models}
    for model in ("pimc", *models):
        prefix = "" if model == "pimc" else f"{model}_"
        values = [metrics[f"{prefix}rmse_{name}"] for name in ("ndvi", "evi", "savi")]
        assert all(math.isfinite(v) and v > 0 for v in values), (model, values)
        assert metrics[f"{prefix}rmse_mean"] == pytest.approx(np.mean(values))
        assert results["rmse_by_model"][model]["ndvi"] == metrics[f"{prefix}rmse_ndvi"]


def check_source(results: dict, task: str, protocol: str, pretrain: Path | None) -> None:
    assert results["task"] == task and results["protocol"] == protocol
    assert results["num_devices"] == 1
    if pretrain is None:
        assert results["init_from"] == "random"
        assert results["step"] is None and results["checkpoint"] is None
    else:
        assert results["init_from"] == str(pretrain)
        assert results["step"] == PRETRAIN_STEPS
        assert results["checkpoint"] == str(pretrain / "checkpoints" / str(PRETRAIN_STEPS))


# --------------------------------------------------------------------------------------
# Fixtures.


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Any]:
    """Every dataset of this file, written once: paths and what the writers returned."""
    root = tmp_path_factory.mktemp("data")
    out: dict[str, Any] = {"root": root}
    # Patches in folds 1, 2, 3 with 5, 6, 7 dates.
    out["pastis"] = write_pastis_dir(root / "pastis", num_patches=3, size=32)
    out["eurosat"] = write_eurosat_archives(
        root / "eurosat", per_class=3, rgb=False, split_lists=True
    )
    out["pixels"] = write_user_npz(root / "pixels.npz", num_pixels=60, num_dates=8)
    out["test_pixels"] = write_user_npz(root / "test.npz", num_pixels=15, num_dates=8, seed=1)
    out["patches"] = write_user_patch_folder(root / "patches", num_patches=2, size=8)
    return out


@pytest.fixture(scope="module")
def pretrain(data, tmp_path_factory) -> Path:
    """A 4-step tiny pre-training on the PASTIS fixture, from the command line."""
    workdir = tmp_path_factory.mktemp("pretrain_pastis")
    pastis = data["root"] / "pastis"
    # Indices that need only blue, red and NIR, so that the 4-band user pixel files of the
    # `data` fixture can be embedded by this encoder ("auto" would also use SWIR and B5).
    indices = "--config.model.indices=('ndvi','evi','savi')"
    launch_ok(
        "pretrain:tiny",
        workdir,
        "--config.data.name=pastis",
        f"--config.data.path={pastis}",
        indices,
        f"--config.total_steps={PRETRAIN_STEPS}",
        f"--config.global_batch_size={BATCH}",
    )
    return workdir


# --------------------------------------------------------------------------------------
# PASTIS: pre-training, then the three evaluations from its workdir.


def test_pretrain_on_pastis(pretrain, data):
    steps = sorted(int(p.name) for p in (pretrain / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [2, 4]  # checkpoint_every_steps=2 of the tiny config
    lines = (pretrain / "metrics.jsonl").read_text().splitlines()
    metrics = [json.loads(line) for line in lines]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert all(math.isfinite(m["loss"]) for m in metrics)
    # An untrained model scores the BATCH candidates about evenly: InfoNCE ≈ ln(BATCH).
    assert metrics[0]["loss"] == pytest.approx(math.log(BATCH), abs=0.5)
    config = json.loads((pretrain / "config.json").read_text())
    assert config["data"]["name"] == "pastis"
    assert config["data"]["path"] == str(data["root"] / "pastis")
    assert config["model"]["rp_encoder"]["widths"] == [8] and config["model"]["rp_size"] == 8
    assert (config["global_batch_size"], config["data"]["crop_size"]) == (BATCH, 8)
    assert list((pretrain / "tensorboard").glob("events.out.tfevents.*"))
    assert (data["root"] / "pastis" / "tfds").is_dir()  # prepared once, beside the data


def test_pastis_pixel_classification(pretrain, data, tmp_path):
    results = launch_ok(
        "eval_pastis_classification",
        tmp_path,
        "--config.data.name=pastis",
        f"--config.data.path={data['root'] / 'pastis'}",
        f"--config.init_from={pretrain}",
        "--config.data.max_dates=16",
        f"--config.data.pixels_per_patch={PIXELS_PER_PATCH}",
        *PASTIS_FOLDS,
        *LINEAR,
    )
    check_source(results, "eval_pastis_classification", "linear", pretrain)
    # One patch per fold, 32 × 32 pixels: PIXELS_PER_PATCH labelled pixels from each.
    sizes = {k: results["data"][f"num_{k}"] for k in ("train", "val", "test")}
    assert sizes == {"train": PIXELS_PER_PATCH, "val": PIXELS_PER_PATCH, "test": PIXELS_PER_PATCH}
    check_classification(results, PIXELS_PER_PATCH)
    test_patch = next(p for p in data["pastis"].values() if p["fold"] == 3)
    present = set(np.unique(test_patch["target"][0]).tolist()) - {0, 19}
    assert {row["class"] for row in results["per_class"]} <= present
    assert results["config"]["test_folds"] == [3]


@pytest.mark.slow  # the forecast CLI path: test_user_npz_forecast_with_test_file
def test_pastis_forecast(pretrain, data, tmp_path):
    results = launch_ok(
        "eval_pastis_forecast",
        tmp_path,
        "--config.data.name=pastis",
        f"--config.data.path={data['root'] / 'pastis'}",
        f"--config.init_from={pretrain}",
        f"--config.data.pixels_per_patch={PIXELS_PER_PATCH}",
        *PASTIS_FOLDS,
        *FORECAST,
        *FINETUNE,
    )
    check_source(results, "eval_pastis_forecast", "finetune", pretrain)
    # The 1-D CNN reference runs on 3-observation inputs too (shorter than its pooling).
    check_forecast(results, ("ridge_1d", "zero", "cnn_1d"))
    # Every fixture pixel has >= 5 valid dates (random digital numbers, no no-data).
    assert results["data"]["num_test"] == PIXELS_PER_PATCH


def test_eurosat_all_bands(pretrain, data, tmp_path):
    results = launch_ok(
        "eval_eurosat",
        tmp_path,
        "--config.data.name=eurosat",
        f"--config.data.path={data['root'] / 'eurosat'}",
        "--config.data.eurosat_variant=all",
        f"--config.init_from={pretrain}",
        *LINEAR,
    )
    check_source(results, "eval_eurosat", "linear", pretrain)
    splits = data["eurosat"]["splits"]  # the split lists written beside the archives
    assert results["data"]["num_train"] == len(splits["train"])
    assert results["data"]["num_val"] == len(splits["validation"])
    check_classification(results, len(splits["test"]))
    assert [row["name"] for row in results["per_class"]] == list(EUROSAT_CLASSES)
    # B4, B3, B2, B8 of the pre-trained image tower, picked from the 13 bands.
    assert results["data"]["image_shape"] == [64, 64, 4]
    assert results["data"]["image_normalization"] == "checkpoint"


# --------------------------------------------------------------------------------------
# User pixel files and patch folders.


def test_user_npz_pixel_classification_random(data, tmp_path):
    results = launch_ok(
        "eval_pastis_classification:tiny",
        tmp_path,
        "--config.data.name=npz",
        f"--config.data.path={data['root'] / 'pixels.npz'}",
        "--config.init_from=random",
        "--config.exclude_classes=()",
        *LINEAR,
    )
    check_source(results, "eval_pastis_classification", "linear", None)
    # Seeded stratified 20 % / 20 % split: round(0.2 · count) pixels of each class held out.
    counts = np.bincount(data["pixels"]["labels"], minlength=3)
    held_out = [int(round(0.2 * c)) for c in counts]
    assert results["data"]["num_val"] == sum(held_out)
    assert results["data"]["num_train"] == 60 - 2 * sum(held_out)
    check_classification(results, sum(held_out))
    assert [row["support"] for row in results["per_class"]] == held_out
    assert [row["name"] for row in results["per_class"]] == ["class_0", "class_1", "class_2"]


def _zero_forecast_rmse(written: dict[str, Any]) -> np.ndarray:
    """RMSE per index (NDVI, EVI, SAVI) of predicting the input mean, in NumPy."""
    blue, _, red, nir = np.moveaxis(written["bands_reflectance"].astype(np.float64), -1, 0)
    indices = np.stack(
        [
            (nir - red) / (nir + red),
            2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1),
            1.5 * (nir - red) / (nir + red + 0.5),
        ],
        axis=-1,
    )
    errors = []
    for series in indices:
        series = series[np.isfinite(series).all(axis=-1)][: INPUT_LENGTH + HORIZON]
        inputs, targets = series[:INPUT_LENGTH], series[INPUT_LENGTH:]
        std = np.maximum(inputs.std(axis=0), 1e-3)
        errors.append((targets - inputs.mean(axis=0)) / std)
    return np.sqrt(np.mean(np.square(errors), axis=(0, 1)))


def test_user_npz_forecast_with_test_file(pretrain, data, tmp_path):
    results = launch_ok(
        "eval_pastis_forecast",
        tmp_path,
        "--config.data.name=npz",
        f"--config.data.path={data['root'] / 'pixels.npz'}",
        f"--config.data.test_path={data['root'] / 'test.npz'}",
        f"--config.init_from={pretrain}",
        "--config.protocol=linear",
        "--config.forecast.cnn_baseline=False",
        *FORECAST,
    )
    check_source(results, "eval_pastis_forecast", "linear", pretrain)
    check_forecast(results, ("ridge_1d", "zero"))
    sizes = results["data"]
    assert sizes["num_test"] == 15  # the whole test file
    assert sizes["num_train"] + sizes["num_val"] == 60
    expected = _zero_forecast_rmse(data["test_pixels"])
    got = [results["metrics"][f"zero_rmse_{name}"] for name in ("ndvi", "evi", "savi")]
    np.testing.assert_allclose(got, expected, rtol=1e-3)


def test_pretrain_on_user_patch_folder(data, tmp_path):
    folder = data["root"] / "patches"
    launch_ok(
        "pretrain:tiny",
        tmp_path,
        "--config.data.name=patches",
        f"--config.data.path={folder}",
        "--config.total_steps=2",
        f"--config.global_batch_size={BATCH}",
    )
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()] == ["2"]
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in metrics)

    from pimc_jax import load_params

    spec = load_params(tmp_path).spec
    assert tuple(spec.band_names) == ("B2", "B3", "B4", "B8")  # from the folder's metadata.json
    assert tuple(spec.image_bands) == ("B4", "B3", "B2", "B8")


# --------------------------------------------------------------------------------------
# Bad input: a clear message and a non-zero exit.


def test_misspelled_config_key(tmp_path):
    done = launch("pretrain", tmp_path, "--config.totl_steps=3")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "--config.totl_steps" in done.stderr
    assert 'Did you mean "total_steps"' in done.stderr
    assert not (tmp_path / "metrics.jsonl").exists()  # refused before any step


def test_pastis_without_path(tmp_path):
    done = launch("pretrain", tmp_path, "--config.data.name=pastis")
    assert done.returncode != 0
    assert "ValueError: data.name='pastis' needs --config.data.path" in done.stderr


def test_a_data_path_without_a_source_that_reads_it(data, tmp_path):
    """A folder given to the synthetic source is refused instead of silently ignored."""
    folder = data["root"] / "pastis"
    done = launch("pretrain", tmp_path, f"--config.data.path={folder}")
    assert done.returncode != 0
    fatal = [line for line in done.stderr.splitlines() if line.startswith("FATAL")]
    assert len(fatal) == 1 and "--config.data.name=patches" in fatal[0]
    assert "config.data.name='synthetic'" in fatal[0]
    assert not (tmp_path / "metrics.jsonl").exists()  # refused before any step


def test_user_npz_with_wrong_shape(data, tmp_path):
    bad = tmp_path / "flat.npz"
    written = data["pixels"]
    np.savez(bad, bands=written["bands"][..., 0], band_names=["B2"], dates=written["dates"])
    done = launch(
        "eval_pastis_classification",
        tmp_path / "eval",
        "--config.data.name=npz",
        f"--config.data.path={bad}",
        "--config.init_from=random",
    )
    assert done.returncode != 0
    assert f"ValueError: {bad}: bands must be (N, T, C), got shape (60, 8)" in done.stderr
