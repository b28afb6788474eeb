"""Tests for pimc_jax.metrics.

Event files (written through tensorboardX) are read back with TensorBoard's own reader,
which verifies the TFRecord checksums; console lines are checked against hand-computed
values; a subprocess checks that writing metrics never imports TensorFlow.
"""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator, event_file_loader
from tensorboard.util import tensor_util

from pimc_jax import metrics


def _event_files(logdir):
    return sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))


def _load_events(path):
    return list(event_file_loader.LegacyEventFileLoader(path).Load())  # raw protos


# ----------------------------------------------------------------------------- TensorBoard


def test_tensorboard_event_file_read_by_tensorboard(tmp_path):
    logdir = tmp_path / "tb"
    with metrics.TensorBoardWriter(logdir) as writer:
        writer.scalars(1, {"loss": 3.25, "acc_a2b": np.float32(0.5)})
        writer.scalars(10, {"loss": jnp.asarray(2.0), "steps_done": 10})
        writer.scalars(2**40, {"loss": np.float64(0.1), "huge": 1e300})
    files = _event_files(logdir)
    assert len(files) == 1
    assert os.path.basename(files[0]).startswith("events.out.tfevents.")

    events = _load_events(files[0])
    assert events[0].file_version == "brain.Event:2"
    assert [event.step for event in events[1:]] == [1, 10, 2**40]
    first = {value.tag: value.simple_value for value in events[1].summary.value}
    assert first == {"loss": 3.25, "acc_a2b": 0.5}
    assert events[3].summary.value[0].simple_value == pytest.approx(0.1, rel=1e-7)
    assert math.isinf(events[3].summary.value[1].simple_value)

    accumulator = event_accumulator.EventAccumulator(str(logdir))
    accumulator.Reload()
    assert set(accumulator.Tags()["scalars"]) == {"loss", "acc_a2b", "steps_done", "huge"}
    loss = accumulator.Scalars("loss")
    assert [s.step for s in loss] == [1, 10, 2**40]
    np.testing.assert_allclose([s.value for s in loss], [3.25, 2.0, 0.1], rtol=1e-7)
    assert [s.value for s in accumulator.Scalars("steps_done")] == [10.0]


def test_tensorboard_text_summary(tmp_path):
    with metrics.TensorBoardWriter(tmp_path) as writer:
        writer.text(3, "config", "lr: 0.001\nbatch: 512 — é")
    accumulator = event_accumulator.EventAccumulator(str(tmp_path))
    accumulator.Reload()
    (tensor_event,) = accumulator.Tensors("config")
    assert tensor_event.step == 3
    array = tensor_util.make_ndarray(tensor_event.tensor_proto)
    assert array.shape == ()
    assert array.item().decode("utf-8") == "lr: 0.001\nbatch: 512 — é"


def test_tensorboard_second_writer_gets_its_own_file(tmp_path):
    metrics.TensorBoardWriter(tmp_path).close()
    metrics.TensorBoardWriter(tmp_path).close()
    files = _event_files(tmp_path)
    assert len(files) == 2
    for path in files:
        assert _load_events(path)[0].file_version == "brain.Event:2"


def test_tensorboard_rejects_non_scalar(tmp_path):
    with metrics.TensorBoardWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="'loss'.*shape"):
            writer.scalars(1, {"loss": np.zeros(3)})
        with pytest.raises(ValueError, match="'name'.*numeric"):
            writer.scalars(1, {"name": "abc"})


# ----------------------------------------------------------------------------- JSONL


def test_jsonl_round_trip_and_append_on_reopen(tmp_path):
    path = tmp_path / "sub" / "metrics.jsonl"
    with metrics.JsonlWriter(path) as writer:
        writer.write(1, {"loss": np.float32(0.5), "acc": jnp.asarray(0.25), "count": np.int64(3)})
        writer.write(2, {"loss": 1.5, "nan": float("nan")})
    with metrics.JsonlWriter(path) as writer:
        writer.write(3, {"loss": 0.125})

    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0] == {"step": 1, "loss": 0.5, "acc": 0.25, "count": 3}
    assert isinstance(records[0]["count"], int)
    assert records[1]["step"] == 2 and records[1]["loss"] == 1.5
    assert math.isnan(records[1]["nan"])
    assert records[2] == {"step": 3, "loss": 0.125}


def test_jsonl_flushes_each_write_and_repairs_truncated_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')  # killed mid-line
    writer = metrics.JsonlWriter(path)
    writer.write(3, {"loss": 1.0})
    # Visible on disk before close.
    last = path.read_text().splitlines()[-1]
    assert json.loads(last) == {"step": 3, "loss": 1.0}
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(4, {"loss": 0.0})


def test_jsonl_rejects_bad_metrics(tmp_path):
    with metrics.JsonlWriter(tmp_path / "m.jsonl") as writer:
        with pytest.raises(ValueError, match="'step'"):
            writer.write(1, {"step": 2})
        with pytest.raises(ValueError, match="'grads'.*shape"):
            writer.write(1, {"grads": jnp.ones((2, 2))})


# ----------------------------------------------------------------------------- progress


@pytest.mark.parametrize(
    "seconds, expected",
    [
        (0, "0s"),
        (45.4, "45s"),
        (59.6, "1m00s"),
        (192, "3m12s"),
        (3600 + 2 * 60 + 5, "1h02m"),
        (2 * 86400 + 3 * 3600 + 59, "2d03h"),
        (float("inf"), "--"),
    ],
)
def test_format_duration(seconds, expected):
    assert metrics.format_duration(seconds) == expected


def test_progress_logger_hand_computed_eta():
    times = iter([0.0, 20.0, 26.0])
    lines = []
    progress = metrics.ProgressLogger(
        1000, log=lines.append, items_per_step=512, smoothing=0.9, clock=lambda: next(times)
    )
    first = progress.update(0, {"loss": 3.2109})
    assert first == "step 0/1000 | loss 3.211 | ETA --"
    # 100 steps in 20 s -> 0.2 s/step; 900 steps left -> 180 s; 512 / 0.2 = 2560 pairs/s.
    second = progress.update(100, {"loss": 3.0, "acc_a2b": 0.41})
    assert second == "step 100/1000 | loss 3 | acc_a2b 0.41 | 2560 pairs/s | ETA 3m00s"
    # 20 steps in 6 s -> 0.3 s/step; EMA 0.9 * 0.2 + 0.1 * 0.3 = 0.21 s/step;
    # ETA 880 * 0.21 = 184.8 s -> 3m05s; 512 / 0.21 = 2438.1 pairs/s.
    third = progress.update(120, {"loss": 2.5})
    assert third == "step 120/1000 | loss 2.5 | 2438 pairs/s | ETA 3m05s"
    assert lines == [first, second, third]


def test_progress_logger_without_throughput():
    times = iter([0.0, 10.0])
    progress = metrics.ProgressLogger(10, log=lambda _: None, clock=lambda: next(times))
    progress.update(5)
    assert progress.update(10) == "step 10/10 | ETA 0s"


def test_progress_logger_rejects_bad_arguments():
    with pytest.raises(ValueError, match="total_steps"):
        metrics.ProgressLogger(-1)
    with pytest.raises(ValueError, match="smoothing"):
        metrics.ProgressLogger(10, smoothing=1.0)


# ----------------------------------------------------------------------------- MetricWriter


def test_metric_writer_writes_all_sinks(tmp_path):
    workdir = tmp_path / "run"
    lines = []
    with metrics.MetricWriter(workdir, total_steps=4, log=lines.append) as writer:
        writer.write(2, {"loss": jnp.asarray(1.5), "tau": np.float32(14.0)})
        writer.write(4, {"loss": 1.25, "tau": 14.5})
        writer.write_text(0, "config", "seed: 0")

    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert records == [
        {"step": 2, "loss": 1.5, "tau": 14.0},
        {"step": 4, "loss": 1.25, "tau": 14.5},
    ]

    accumulator = event_accumulator.EventAccumulator(str(workdir / "tensorboard"))
    accumulator.Reload()
    assert [(s.step, s.value) for s in accumulator.Scalars("loss")] == [(2, 1.5), (4, 1.25)]
    assert [(s.step, s.value) for s in accumulator.Scalars("tau")] == [(2, 14.0), (4, 14.5)]
    assert accumulator.Tags()["tensors"] == ["config"]

    assert len(lines) == 2
    assert lines[0].startswith("step 2/4 | loss 1.5 | tau 14")
    assert lines[1].startswith("step 4/4 | loss 1.25 | tau 14.5")
    assert "ETA" in lines[1]


def test_metric_writer_resume_appends(tmp_path):
    with metrics.MetricWriter(tmp_path, total_steps=10, log=lambda _: None) as writer:
        writer.write(1, {"loss": 2.0})
    with metrics.MetricWriter(tmp_path, total_steps=10, log=lambda _: None) as writer:
        writer.write(2, {"loss": 1.0})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_metric_writer_disabled_creates_nothing(tmp_path):
    workdir = tmp_path / "run"
    lines = []
    writer = metrics.MetricWriter(workdir, total_steps=10, enabled=False, log=lines.append)
    writer.write(1, {"loss": 1.0})
    writer.write_text(1, "config", "x")
    writer.flush()
    writer.close()
    assert not workdir.exists()
    assert list(tmp_path.iterdir()) == []
    assert lines == []


def test_metric_writer_rejects_non_numeric(tmp_path):
    with metrics.MetricWriter(tmp_path, total_steps=10, log=lambda _: None) as writer:
        with pytest.raises(ValueError, match="'phase'"):
            writer.write(1, {"phase": "warmup"})


# ----------------------------------------------------------------------------- no TensorFlow

_NO_TENSORFLOW_SCRIPT = """
import importlib.abc, sys, tempfile

attempts = []


class BlockTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            attempts.append(name)
            raise ImportError(f"{name} is blocked")
        return None


sys.meta_path.insert(0, BlockTensorFlow())
from pimc_jax import metrics

with tempfile.TemporaryDirectory() as workdir:
    with metrics.MetricWriter(workdir, total_steps=2, log=lambda _: None) as writer:
        writer.write(1, {"loss": 1.0})
        writer.write_text(0, "config", "seed: 0")
loaded = [m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")]
print(attempts, loaded)
assert not attempts and not loaded, (attempts, loaded)
"""


def test_metrics_never_import_tensorflow():
    # Even where TensorFlow is installed: any attempt to import it (optional imports
    # included) is recorded and fails the test. A fresh interpreter keeps other tests'
    # imports out of it.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pythonpath = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", _NO_TENSORFLOW_SCRIPT],
        cwd=root,
        env={**os.environ, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
