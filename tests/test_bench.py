"""The README's benchmark commands run and print their ratios (tiny sizes; no timing asserted)."""

import os
import re
import subprocess
import sys

from format_writers import write_user_npz
from tiny_configs import ROOT


def _run(*args: str) -> str:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _ratio(output: str, label: str) -> float:
    match = re.search(re.escape(label) + r"\s*([0-9.]+)x", output)
    assert match, output
    return float(match.group(1))


def test_recurrence_bench():
    out = _run("bench/recurrence.py", "--n", "64", "--t", "12", "--repeats", "1")
    assert _ratio(out, "speed-up JAX/pyts:") > 0
    assert _ratio(out, "speed-up JAX/NumPy:") > 0


def test_train_step_bench_one_and_two_devices():
    out = _run(
        "bench/train_step.py",
        "--devices=1,2",
        "--repeats=1",
        "--set",
        "global_batch_size=16",
        "--set",
        "data.num_patches=4",
    )
    assert _ratio(out, "pairs/s ratio 2 vs 1 device(s):") > 0
    shares = re.findall(r"([0-9.]+)%", out)
    assert len(shares) == 2 and all(0 < float(s) <= 100 for s in shares)


def test_input_pipeline_bench():
    out = _run("bench/input_pipeline.py", "--batches", "3", "--threads", "1")
    assert _ratio(out, "ratio delivered/consumed:") > 0


def test_pixel_benchmark_rows_share_folds(tmp_path):
    path = tmp_path / "pixels.npz"
    write_user_npz(path, num_pixels=40, num_dates=6, num_classes=3)
    out = _run(
        "bench/pixel_benchmark.py",
        str(path),
        "--folds=2",
        "--set=finetune.steps=4",
        "--set=finetune.eval_every_steps=2",
        "--set=model.rp_size=8",
    )
    table = {
        line.split("|")[1].strip(): line
        for line in out.splitlines()
        if line.startswith("| ") and "±" in line
    }
    assert set(table) == {"rf", "cnn_1d", "pimc", "pimc_paper"}
    for line in table.values():
        accuracy = float(line.split("|")[2].split("±")[0])
        assert 0.0 <= accuracy <= 1.0
