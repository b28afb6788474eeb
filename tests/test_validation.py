"""Bad input fails early and clearly: config validation, label bounds, the resume policy and
the CLI's one-line user errors."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_configs import ROOT, load_config, one_cpu_env, tiny_pretrain_config

from pimc_jax import launcher
from pimc_jax.checkpoint import CheckpointStore
from pimc_jax.data.user import MAX_CLASSES, load_pixel_npz
from pimc_jax.train import validate_pretrain_config

# --------------------------------------------------------------------------------------
# 1. Config validation before any work.


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"keep_checkpoints": 0}, r"config\.keep_checkpoints must be >= 1, got 0"),
        ({"checkpoint_every_steps": 0}, r"config\.checkpoint_every_steps must be >= 1, got 0"),
        ({"log_every_steps": 0}, r"config\.log_every_steps must be >= 1, got 0"),
        ({"total_steps": 0}, r"config\.total_steps must be >= 1, got 0"),
        ({"global_batch_size": -4}, r"config\.global_batch_size must be >= 1, got -4"),
        ({"data.max_dates": 0}, r"config\.data\.max_dates must be >= 1, got 0"),
        ({"data.crop_size": 0}, r"config\.data\.crop_size must be >= 1, got 0"),
        ({"data.crop_size": 17}, r"config\.data\.crop_size=17 is larger than the patches"),
        (
            {"model.rp_size": 1},
            r"config\.model\.rp_size must be 0 \(chosen from the data's dates\) or >= 2, got 1",
        ),
        ({"model.rp_dimension": 8}, r"config\.model\.rp_size=8 leaves a 1-pixel plot"),
        ({"global_batch_size": 6}, r"global_batch_size=6 is not divisible by the 4 devices"),
    ],
)
def test_bad_counts_and_sizes_fail_before_any_work(tmp_path, overrides, message):
    config = tiny_pretrain_config(**overrides)
    with pytest.raises(ValueError, match=message) as error:
        launcher.run(config, str(tmp_path))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "checkpoints").exists()
    assert not (tmp_path / "config.json").exists()


def test_tiny_and_default_configs_are_valid():
    validate_pretrain_config(tiny_pretrain_config())
    validate_pretrain_config(load_config("pretrain"))


# --------------------------------------------------------------------------------------
# 2. Labels are bounded class indices.


def _pixel_file(path: Path, labels: np.ndarray, **extra) -> Path:
    rng = np.random.default_rng(0)
    num_pixels = labels.shape[0]
    np.savez(
        path,
        bands=rng.uniform(0, 0.5, (num_pixels, 6, 4)).astype(np.float32),
        band_names=np.array(["B2", "B3", "B4", "B8"]),
        dates=np.arange(6) * 10,
        labels=labels,
        **extra,
    )
    return path


@pytest.mark.parametrize("bad", [10**9, MAX_CLASSES, -1])
def test_out_of_range_label_is_refused(tmp_path, bad):
    labels = np.arange(40) % 3
    labels[7] = bad
    path = _pixel_file(tmp_path / "pixels.npz", labels)
    with pytest.raises(ValueError, match=rf"pixels\.npz: label {bad} is out of range") as error:
        load_pixel_npz(path)
    assert "\n" not in str(error.value)

    config = load_config("eval_pastis_classification:tiny")
    config.data.name = "npz"
    config.data.path = str(path)
    with pytest.raises(ValueError, match=rf"label {bad} is out of range"):
        launcher.run(config, str(tmp_path / "eval"))


def test_float_label_beyond_int32_is_refused(tmp_path):
    labels = (np.arange(10) % 2).astype(np.float64)
    labels[3] = 1e12
    path = _pixel_file(tmp_path / "pixels.npz", labels)
    with pytest.raises(ValueError, match=r"label 1000000000000 is out of range"):
        load_pixel_npz(path)


def test_largest_allowed_label_loads(tmp_path):
    labels = np.zeros(10, np.int64)
    labels[0] = MAX_CLASSES - 1
    assert load_pixel_npz(_pixel_file(tmp_path / "p.npz", labels)).labels.max() == 9999


# --------------------------------------------------------------------------------------
# 3. The resume policy.

BASE_STEPS = 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny pre-training workdir at step BASE_STEPS (copied by each test)."""
    workdir = tmp_path_factory.mktemp("base") / "run"
    launcher.run(tiny_pretrain_config(total_steps=BASE_STEPS), str(workdir))
    return workdir


@pytest.fixture
def workdir(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


@pytest.mark.parametrize(
    ("overrides", "changed"),
    [
        ({"seed": 1}, "seed: 0 → 1"),
        ({"global_batch_size": 32}, "global_batch_size: 16 → 32"),
        ({"optimizer.learning_rate": 1e-3}, "optimizer.learning_rate: 0.003 → 0.001"),
        ({"data.image_date": "random_clear"}, "data.image_date: 'median' → 'random_clear'"),
        ({"augment": False}, "augment: True → False"),
    ],
)
def test_trajectory_change_is_refused_naming_the_key(workdir, overrides, changed):
    config = tiny_pretrain_config(total_steps=4, **overrides)
    with pytest.raises(ValueError, match="cannot resume") as error:
        launcher.run(config, str(workdir))
    message = str(error.value)
    assert "\n" not in message
    assert changed in message
    assert "image_mean" not in message and "total_steps" not in message
    assert "resume_allow_changes=True" in message
    assert CheckpointStore(workdir).latest_step() == BASE_STEPS
    assert not list(workdir.glob("config.*.json"))


def test_allowed_change_resumes_and_keeps_every_config(workdir, caplog):
    config = tiny_pretrain_config(
        total_steps=3, resume_allow_changes=True, **{"optimizer.learning_rate": 1e-3}
    )
    with caplog.at_level(logging.WARNING):
        launcher.run(config, str(workdir))
    assert CheckpointStore(workdir).latest_step() == 3
    assert "optimizer.learning_rate: 0.003 → 0.001" in caplog.text
    first = json.loads((workdir / "config.json").read_text())
    resumed = json.loads((workdir / f"config.{BASE_STEPS}.json").read_text())
    assert first["optimizer"]["learning_rate"] == 0.003 and first["total_steps"] == BASE_STEPS
    assert resumed["optimizer"]["learning_rate"] == 0.001 and resumed["total_steps"] == 3


def test_extending_total_steps_is_allowed_and_logged(workdir, caplog):
    with caplog.at_level(logging.INFO):
        metrics = launcher.run(tiny_pretrain_config(total_steps=4), str(workdir))
    assert metrics and CheckpointStore(workdir).latest_step() == 4
    assert "total_steps 2 → 4" in caplog.text and "schedule is rebuilt" in caplog.text
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").open()]
    assert steps[-1] == 4
    assert json.loads((workdir / "config.json").read_text())["total_steps"] == BASE_STEPS
    assert json.loads((workdir / "config.2.json").read_text())["total_steps"] == 4


@pytest.mark.parametrize("total_steps", [1, BASE_STEPS])
def test_nothing_to_do_is_logged(workdir, caplog, total_steps):
    before = (workdir / "config.json").read_text()
    with caplog.at_level(logging.INFO):
        assert launcher.run(tiny_pretrain_config(total_steps=total_steps), str(workdir)) == {}
    lines = [r.getMessage() for r in caplog.records if "Nothing to do" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert f"step {BASE_STEPS}" in lines[0] and f"total_steps={total_steps}" in lines[0]
    assert (workdir / "config.json").read_text() == before
    assert not list(workdir.glob("config.*.json"))
    assert CheckpointStore(workdir).latest_step() == BASE_STEPS


# --------------------------------------------------------------------------------------
# 4. The CLI: one line for user errors, the traceback on request.


def _launch(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "launch.py", *flags],
        cwd=ROOT,
        env=one_cpu_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _fatal_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("FATAL")]


def test_cli_user_error_is_one_line_without_traceback(tmp_path):
    done = _launch(
        "--config=configs/pretrain.py:tiny", "--config.keep_checkpoints=0", f"--workdir={tmp_path}"
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert _fatal_lines(done.stderr) == [
        "FATAL: ValueError: config.keep_checkpoints must be >= 1, got 0"
    ]
    assert not (tmp_path / "checkpoints").exists()


def test_cli_verbosity_shows_the_traceback(tmp_path):
    done = _launch(
        "--config=configs/pretrain.py:tiny",
        "--config.log_every_steps=0",
        "--verbosity=1",
        f"--workdir={tmp_path}",
    )
    assert done.returncode != 0
    assert "Traceback" in done.stderr
    assert "ValueError: config.log_every_steps must be >= 1, got 0" in done.stderr


def test_cli_unknown_task_and_missing_file_are_one_line(tmp_path):
    done = _launch(
        "--config=configs/pretrain.py:tiny", "--config.task=nope", f"--workdir={tmp_path}"
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = _fatal_lines(done.stderr)
    assert "config.task must be one of" in line and "'nope'" in line

    missing = tmp_path / "missing.npz"
    done = _launch(
        "--config=configs/eval_pastis_classification.py:tiny",
        "--config.data.name=npz",
        f"--config.data.path={missing}",
        f"--workdir={tmp_path / 'eval'}",
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = _fatal_lines(done.stderr)
    assert str(missing) in line


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("configs/nope.py", "FATAL: FileNotFoundError: no config file configs/nope.py"),
        ("configs/pretrain.py:bogus", "ValueError: unknown config variant(s) ['bogus']"),
    ],
)
def test_cli_bad_config_file_is_one_line(tmp_path, config, expected):
    done = _launch(f"--config={config}", f"--workdir={tmp_path}")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = _fatal_lines(done.stderr)
    assert expected in line


def test_cli_refused_resume_is_one_line(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    done = _launch("--config=configs/pretrain.py:tiny", "--config.seed=5", f"--workdir={workdir}")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = _fatal_lines(done.stderr)
    assert line.startswith("FATAL: ValueError: cannot resume") and "seed: 0 → 5" in line


def test_user_error_line_folds_newlines():
    line = launcher.user_error_line(FileNotFoundError("no such\nfile  here"))
    assert line == "FATAL: FileNotFoundError: no such file here"


def test_keys_added_to_the_library_later_do_not_block_a_resume():
    from pimc_jax.train import check_resume

    config = tiny_pretrain_config()
    saved = json.loads(json.dumps(config.to_dict()))
    del saved["data"]["scl_invalid_classes"]  # a workdir written before the key existed
    del saved["model"]["rp_span"]
    # Absent keys read as what the run did before they existed: SCL masking at its
    # default, plots over the valid dates (rp_span="valid", the former behaviour).
    config.model.rp_span = "valid"
    check_resume(config, saved, 2, "run")
    config.model.rp_span = "acquisitions"
    with pytest.raises(ValueError, match=r"model\.rp_span: 'valid' → 'acquisitions'"):
        check_resume(config, saved, 2, "run")


def test_patches_of_one_date_are_refused_before_training(tmp_path):
    """A folder whose patches hold one date each cannot make recurrence plots."""
    from pimc_jax.train import build_pretraining

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.savez(
            tmp_path / f"{name}.npz",
            bands=rng.uniform(0.0, 0.4, (1, 8, 8, 4)).astype(np.float32),
            dates=np.array(["2021-06-01"]),
            band_names=np.array(["B2", "B3", "B4", "B8"]),
        )
    config = tiny_pretrain_config(**{"data.name": "patches", "data.path": str(tmp_path)})
    with pytest.raises(ValueError, match="holds one date") as error:
        build_pretraining(config)
    assert "\n" not in str(error.value)


def test_loading_names_the_data_and_the_patches_that_are_mostly_gaps(tmp_path, caplog):
    from pimc_jax.data import load_patches

    rng = np.random.default_rng(0)
    for name, gap_share in (("clear", 0.0), ("cloudy", 0.9)):
        bands = rng.uniform(0.0, 0.4, (4, 10, 10, 2)).astype(np.float32)
        bands[rng.random((4, 10, 10)) < gap_share] = np.nan
        np.savez(
            tmp_path / f"{name}.npz", bands=bands, dates=[0, 5, 10, 15], band_names=["B4", "B8"]
        )
    config = tiny_pretrain_config(**{"data.name": "patches", "data.path": str(tmp_path)})
    with caplog.at_level(logging.INFO):
        load_patches(config.data)
    lines = [r.getMessage() for r in caplog.records]
    data_line = next(line for line in lines if line.startswith("Data: data.name=patches"))
    assert str(tmp_path) in data_line and "2 patches (10×10 px)" in data_line
    assert "4–4 dates" in data_line and "['B4', 'B8']" in data_line
    share = float(data_line.split("bands ['B4', 'B8'], ")[1].split(" %")[0])
    assert abs(share - 45.0) < 5.0  # about (0 % + 90 %) / 2 of the observations
    assert any("mostly gaps" in line and "cloudy" in line for line in lines)
