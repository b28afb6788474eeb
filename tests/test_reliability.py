"""Faults a user meets, each ending in one clear line and no bad state saved: non-finite
training, two runs in one workdir, a corrupt final step, Ctrl-C and resumed metrics, a full
disk, nonsense data and config values, inconsistent ``encode`` inputs, extreme floats."""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from tiny_configs import tiny_pretrain_config

from pimc_jax import checkpoint, launcher, storage
from pimc_jax.checkpoint import (
    CheckpointStore,
    NonFiniteCheckpointError,
    NonFiniteStateError,
    load_params,
)
from pimc_jax.data.pipeline import PairBatches
from pimc_jax.train import TrainingDivergedError, TrainingInterrupted
from pimc_jax.workdir_lock import LOCK_NAME, WorkdirLock, WorkdirLockedError, _pid_start


def _leaves(tree):
    return [np.array(x) for x in jax.tree.leaves(tree)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _fatal_line(capsys, config, workdir) -> str:
    """Runs ``config`` as ``launch.py`` does; returns its one stderr line (exit status 1)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        launcher.run_cli(config, str(workdir))
    assert exit_info.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FATAL")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 4-step tiny pre-training (checkpoints at steps 2 and 4, metrics every step)."""
    workdir = tmp_path_factory.mktemp("pretrained") / "run"
    launcher.run(tiny_pretrain_config(total_steps=4, log_every_steps=1), str(workdir))
    return workdir


@pytest.fixture
def workdir(pretrained, tmp_path):
    """A private copy of the pre-trained workdir."""
    return Path(shutil.copytree(pretrained, tmp_path / "run"))


# --------------------------------------------------------------------------------------
# 1. Non-finite state is never saved or loaded; the run stops at the first non-finite loss.


def test_nonfinite_state_is_not_saved(tmp_path, tiny_params):
    store = CheckpointStore(tmp_path)
    params = {"layer": {"kernel": np.ones(3, np.float32), "bias": np.array([0, np.nan])}}
    with pytest.raises(NonFiniteStateError, match=r"step 7 .*params/layer/bias.*learning_rate"):
        store.save(7, params, {"count": np.zeros(())}, tiny_params.spec, {})
    with pytest.raises(NonFiniteStateError, match=r"opt_state/mu"):
        store.save(7, {"w": np.ones(2)}, {"mu": np.array([np.inf])}, tiny_params.spec, {})
    store.close()
    assert checkpoint.checkpoint_steps(tmp_path) == []


def _forge_nonfinite_step(workdir: Path, step: int, monkeypatch) -> None:
    """Saves ``step`` with a NaN in the params, as a run before the finite check did."""
    good = load_params(workdir / "checkpoints" / "4")
    store = CheckpointStore(workdir)
    params, opt_state, _ = store.restore(4, good.variables, _opt_state_like(workdir))
    leaves, tree = jax.tree.flatten(params)
    leaves[0] = np.full_like(leaves[0], np.nan)
    monkeypatch.setattr(checkpoint, "first_nonfinite_leaf", lambda tree, prefix="": None)
    store.save(step, jax.tree.unflatten(tree, leaves), opt_state, good.spec, {})
    store.close()
    monkeypatch.undo()


def _opt_state_like(workdir: Path):
    from pimc_jax.step import create_train_state
    from pimc_jax.train import build_pretraining

    setup = build_pretraining(tiny_pretrain_config(total_steps=4, log_every_steps=1))
    return create_train_state(setup.spec, setup.optimizer, jax.random.key(0)).opt_state


def test_load_params_refuses_a_nonfinite_step(workdir, monkeypatch, caplog):
    _forge_nonfinite_step(workdir, 6, monkeypatch)
    with pytest.raises(NonFiniteCheckpointError, match=r"non-finite.*learning_rate"):
        load_params(workdir / "checkpoints" / "6")
    fallback = load_params(workdir)  # the workdir: the newest finite step instead
    _assert_same(
        _leaves(fallback.variables), _leaves(load_params(workdir / "checkpoints/4").variables)
    )
    assert any("non-finite" in record.getMessage() for record in caplog.records)


def test_run_stops_at_the_first_nonfinite_loss(tmp_path, capsys):
    config = tiny_pretrain_config(
        **{"optimizer.learning_rate": 1e10, "total_steps": 8, "log_every_steps": 100}
    )
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at step 4.*step 2"):
        launcher.run(config, str(tmp_path / "a"))
    assert checkpoint.checkpoint_steps(tmp_path / "a") == [2]  # nothing after the divergence
    line = _fatal_line(capsys, config, tmp_path / "b")
    assert "step 4" in line and "learning_rate" in line


# --------------------------------------------------------------------------------------
# 2. One run per workdir.


def _lock_record(pid: int) -> dict:
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": _pid_start(pid),
        "started": "2026-01-01T00:00:00Z",
    }


def test_second_run_into_a_workdir_is_refused_naming_the_first(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        tmp_path.mkdir(exist_ok=True)
        (tmp_path / LOCK_NAME).write_text(json.dumps(_lock_record(holder.pid)))
        line = _fatal_line(capsys, tiny_pretrain_config(total_steps=2), tmp_path)
        assert f"pid {holder.pid}" in line and "in use by another run" in line
        assert not (tmp_path / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its stale lock is taken over (kept aside) and the run proceeds.
    launcher.run(tiny_pretrain_config(total_steps=2), str(tmp_path))
    assert checkpoint.checkpoint_steps(tmp_path) == [2]
    assert not (tmp_path / LOCK_NAME).exists()  # released at the end
    assert len(list(tmp_path.glob(f"{LOCK_NAME}.stale-{holder.pid}-*"))) == 1


def test_only_one_of_racing_runs_gets_the_lock(tmp_path):
    results: list[str] = []

    def take() -> None:
        lock = WorkdirLock(tmp_path)
        try:
            lock.acquire()
            results.append("held")
        except WorkdirLockedError:
            results.append("refused")

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["held"] + ["refused"] * 7


def test_lock_of_a_recycled_pid_is_stale(tmp_path):
    record = _lock_record(os.getppid())
    record["pid_start"] = (record["pid_start"] or 0) + 12345  # another process's start time
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    with WorkdirLock(tmp_path) as lock:
        assert json.loads((tmp_path / LOCK_NAME).read_text()) == lock.record


def test_a_truncated_array_prints_no_tracebacks_after_its_one_line(workdir, monkeypatch):
    # Orbax's other reads of the step finish after the failed restore and report to its
    # closed event loop; Python hands each to sys.unraisablehook, which prints a traceback.
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(unraisable))
    files = (p for p in (workdir / "checkpoints/4/params").rglob("*") if p.is_file())
    os.truncate(max(files, key=lambda p: p.stat().st_size), 10)
    for _ in range(3):
        with pytest.raises(checkpoint.CorruptCheckpointError):
            load_params(workdir / "checkpoints" / "4")
    assert load_params(workdir).spec is not None  # falls back to step 2
    time.sleep(1.0)  # the reads still running finish
    gc.collect()
    assert not [str(u.exc_value)[:80] for u in seen]


# --------------------------------------------------------------------------------------
# 3. A corrupt final step is moved aside and written again.


def test_corrupt_final_step_is_moved_aside_and_saved_again(workdir):
    original = _leaves(load_params(workdir / "checkpoints" / "4").variables)
    data = max((workdir / "checkpoints/4/params/d").iterdir(), key=lambda p: p.stat().st_size)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    launcher.run(tiny_pretrain_config(total_steps=4, log_every_steps=1), str(workdir))
    aside = list((workdir / "checkpoints").glob("4.corrupt-*"))
    assert len(aside) == 1 and (aside[0] / "params").is_dir()  # kept, not deleted
    assert checkpoint.checkpoint_steps(workdir) == [2, 4]
    _assert_same(_leaves(load_params(workdir).variables), original)


def test_nonfinite_final_step_is_moved_aside_on_resume(workdir, monkeypatch):
    _forge_nonfinite_step(workdir, 6, monkeypatch)
    launcher.run(tiny_pretrain_config(total_steps=6, log_every_steps=1), str(workdir))
    assert len(list((workdir / "checkpoints").glob("6.corrupt-*"))) == 1
    assert checkpoint.first_nonfinite_leaf(load_params(workdir).variables) is None
    assert checkpoint.read_meta(workdir)["step"] == 6


# --------------------------------------------------------------------------------------
# 4. Ctrl-C saves and exits 130; a resumed run's metrics hold each step once.


def _interrupt_at(monkeypatch, step: int, signum: int = signal.SIGINT) -> None:
    original_next = PairBatches.__next__

    def next_with_signal(self):
        if self._next_step == step:
            os.kill(os.getpid(), signum)
        return original_next(self)

    monkeypatch.setattr(PairBatches, "__next__", next_with_signal)


def test_ctrl_c_saves_the_step_and_exits_130(tmp_path, monkeypatch, capsys):
    config = tiny_pretrain_config(total_steps=6)
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(TrainingInterrupted):
        launcher.run(config, str(tmp_path / "a"))
    assert checkpoint.checkpoint_steps(tmp_path / "a") == [2, 3]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        launcher.run_cli(config, str(tmp_path / "b"))
    assert exit_info.value.code == 130
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.undo()
    launcher.run(config, str(tmp_path / "a"))  # resumes
    assert checkpoint.checkpoint_steps(tmp_path / "a")[-1] == 6


def _crash_at(monkeypatch, step: int) -> None:
    original_next = PairBatches.__next__

    def crashing_next(self):
        if self._next_step == step:
            raise KeyboardInterrupt  # as a kill: no save of the step reached
        return original_next(self)

    monkeypatch.setattr(PairBatches, "__next__", crashing_next)


@pytest.mark.parametrize("crash_at, saved", [(4, [2]), (2, [])])
def test_resumed_run_writes_each_step_once(tmp_path, monkeypatch, crash_at, saved):
    from tensorboard.backend.event_processing import event_accumulator

    config = tiny_pretrain_config(total_steps=6, log_every_steps=1, checkpoint_every_steps=2)
    # crash_at=4: steps 1..3 are logged and step 2 saved, so the resume trains steps 3..
    # again; crash_at=2: step 1 is logged and nothing saved, so the rerun starts afresh.
    _crash_at(monkeypatch, crash_at)
    with pytest.raises(KeyboardInterrupt):
        launcher.run(config, str(tmp_path))
    monkeypatch.undo()
    assert checkpoint.checkpoint_steps(tmp_path) == saved
    assert (tmp_path / "metrics.jsonl").read_text().strip()  # the killed run logged steps
    launcher.run(config, str(tmp_path))
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4, 5, 6]
    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("loss")] == [1, 2, 3, 4, 5, 6]


# --------------------------------------------------------------------------------------
# 9. OS errors: one FATAL line with the path and the free space; config.json atomic.


def test_disk_full_is_one_fatal_line_and_leaves_no_empty_config(tmp_path, monkeypatch, capsys):
    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path))

    monkeypatch.setattr(storage, "write_text_atomic", full)
    line = _fatal_line(capsys, tiny_pretrain_config(total_steps=2), tmp_path)
    assert "No space left on device" in line and "config.json" in line and "free on" in line
    assert not (tmp_path / "config.json").exists()


def test_write_text_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    target.write_text("old\n")

    def failing_fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        storage.write_text_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


# --------------------------------------------------------------------------------------
# 6. Config values that would run without comment into nonsense are refused before work.


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"global_batch_size": 1}, r"global_batch_size must be >= 2 .*negatives.*got 1"),
        ({"optimizer.learning_rate": -1e-3}, r"learning_rate must be finite and in \(0, inf\)"),
        ({"optimizer.learning_rate": 0.0}, r"learning_rate must be finite"),
        ({"optimizer.learning_rate": float("nan")}, r"learning_rate .* got nan"),
        ({"optimizer.weight_decay": float("nan")}, r"weight_decay .* got nan"),
        ({"optimizer.weight_decay": -0.1}, r"weight_decay must be finite and in \[0, inf\)"),
        ({"optimizer.warmup_steps": 7}, r"warmup_steps=7 is more than config\.total_steps=6"),
        ({"data.max_dates": 1}, r"max_dates must be >= 2"),
        ({"optimizer.grad_clip_norm": -1.0}, r"grad_clip_norm must be finite and in \[0, inf\)"),
        ({"optimizer.b1": 2.0}, r"b1 must be finite and in \[0, 1\), got 2\.0"),
        ({"optimizer.b2": 1.0}, r"b2 must be finite and in \[0, 1\)"),
        ({"optimizer.end_factor": float("inf")}, r"end_factor"),
        ({"model.temperature": 0.0}, r"temperature must be finite"),
        ({"global_batch_size": 4 * 10**12}, r"global_batch_size=4000000000000 needs about"),
    ],
)
def test_nonsense_config_values_are_one_fatal_line(tmp_path, capsys, overrides, message):
    config = tiny_pretrain_config(**overrides)
    with pytest.raises(ValueError, match=message):
        launcher.run(config, str(tmp_path))
    line = _fatal_line(capsys, config, tmp_path)
    assert "config." in line
    assert checkpoint.checkpoint_steps(tmp_path) == []


# --------------------------------------------------------------------------------------
# 5. User data that would train into nonsense is refused at load, naming the fix.


def _pixels(path: Path, bands: np.ndarray, **extra) -> Path:
    n, t, _ = bands.shape
    labels = extra.pop("labels", np.arange(n) % 3)
    np.savez(
        path,
        bands=bands,
        band_names=np.array(["B2", "B3", "B4", "B8"]),
        dates=np.arange(t) * 10,
        labels=labels,
        **extra,
    )
    return path


def _reflectance(n: int = 12, t: int = 6) -> np.ndarray:
    return np.random.default_rng(0).uniform(0.02, 0.5, (n, t, 4)).astype(np.float32)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: {"bands": _reflectance() * 10_000}, r"digital numbers.*give scale"),
        (
            lambda: {"bands": _reflectance() * 10_000, "scale": 0.01},
            r"digital numbers.*check scale",
        ),
        (lambda: {"bands": _reflectance(), "scale": 0.0}, r"scale must be > 0"),
        (lambda: {"bands": _reflectance(), "scale": -1e-4}, r"scale must be > 0"),
        (lambda: {"bands": np.full((4, 5, 4), np.nan, np.float32)}, r"every band value is a gap"),
        (lambda: {"bands": _reflectance(), "labels": np.zeros(12, int)}, r"every label is class 0"),
    ],
)
def test_nonsense_pixel_files_are_refused_naming_the_fix(tmp_path, make, message):
    from pimc_jax.data.user import load_pixel_npz

    arrays = make()
    path = _pixels(tmp_path / "pixels.npz", arrays.pop("bands"), **arrays)
    with pytest.raises(ValueError, match=message) as error:
        load_pixel_npz(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_band_without_any_value_is_dropped_with_a_warning(tmp_path, caplog):
    """A product missing one band (B8A in the Flanders file) loads without it."""
    from pimc_jax.data.user import load_pixel_npz

    bands = _reflectance() * np.array([1, 1, 1, np.nan], np.float32)
    with caplog.at_level("WARNING"):
        series = load_pixel_npz(_pixels(tmp_path / "pixels.npz", bands))
    assert series.band_names == ("B2", "B3", "B4")
    np.testing.assert_array_equal(series.bands, bands[..., :3])
    assert any("['B8'] hold no value" in r.getMessage() for r in caplog.records)
    real = (
        Path(__file__).resolve().parents[2] / "shared/data/real/worldcereal_flanders_landcover.npz"
    )
    if real.is_file():
        assert "B8A" not in load_pixel_npz(real).band_names


def test_digital_numbers_with_scale_load(tmp_path):
    from pimc_jax.data.user import load_pixel_npz

    bands = np.round(_reflectance() * 10_000)
    series = load_pixel_npz(_pixels(tmp_path / "p.npz", bands, scale=1e-4))
    assert 0 < np.nanmedian(series.bands) < 1


def test_patch_folder_of_digital_numbers_is_refused(tmp_path):
    from pimc_jax.data.user import load_patch_folder

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.savez(
            tmp_path / f"{name}.npz",
            bands=rng.uniform(200, 3000, (4, 8, 8, 4)).astype(np.float32),
            band_names=np.array(["B2", "B3", "B4", "B8"]),
            dates=np.arange(4) * 10,
            labels=np.zeros((8, 8), int),
        )
    with pytest.raises(ValueError, match=r"a\.npz: band values look like digital numbers"):
        load_patch_folder(tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({"scale": 1e-4}))
    with pytest.raises(ValueError, match=r"every label is class 0"):
        load_patch_folder(tmp_path)


# --------------------------------------------------------------------------------------
# 7. encode checks its inputs against each other.


@pytest.fixture(scope="module")
def encode_batch():
    from pimc_jax.data.synthetic import make_patch

    patch = make_patch(0, 0, size=16)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 16, 6), rng.integers(0, 16, 6)
    return {
        "bands": patch.bands[:, rows, cols].transpose(1, 0, 2),
        "dates": patch.dates,
        "band_names": patch.band_names,
        "image": rng.uniform(0, 0.3, (6, 8, 8, 3)).astype(np.float32),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: {"dates": b["dates"][::-1].copy()}, r"strictly increase.*sort the dates"),
        (
            lambda b: {"dates": np.concatenate([b["dates"][:1], b["dates"][:-1]])},
            r"strictly increase.*repeated",
        ),
        (lambda b: {"dates": b["dates"] + 0.5}, r"integer days|whole|fraction"),
        (lambda b: {"image": b["image"][:4]}, r"bands has 6, image has 4"),
        (lambda b: {"image": b["image"][:, :5, :5]}, r"crops are 5x5; this model .* 8x8"),
        (lambda b: {"image": np.zeros((6, 32, 32, 3), np.float32)}, r"crops are 32x32"),
        (lambda b: {"image": b["image"][:, :, :6]}, r"crops are 8x6"),
    ],
)
def test_encode_refuses_inconsistent_inputs(tiny_params, encode_batch, change, message):
    import pimc_jax

    with pytest.raises(ValueError, match=message) as error:
        pimc_jax.encode(tiny_params, {**encode_batch, **change(encode_batch)})
    assert "\n" not in str(error.value)


def test_encode_flags_all_gap_crops(tiny_params, encode_batch):
    import pimc_jax

    image = encode_batch["image"].copy()
    image[[1, 4]] = np.nan
    out = pimc_jax.encode(tiny_params, {**encode_batch, "image": image})
    np.testing.assert_array_equal(out["image_valid"], [True, False, True, True, False, True])
    assert out["valid"].all()  # the series are intact


# --------------------------------------------------------------------------------------
# 8. Numerics: finite plots for every finite input; clear errors for wrong argument types.


@pytest.mark.parametrize(
    "options", [{}, {"normalize": True}, {"dimension": 2}, {"threshold": 1e38}]
)
def test_recurrence_plot_of_extreme_floats_is_finite(options):
    from pimc_jax.recurrence import recurrence_plot

    for series in ([3e38, -3e38], [3e38, -3e38, 1e38, 0.0], [1e-45, -3.4e38]):
        plot = np.asarray(recurrence_plot(np.array(series, np.float32), **options))
        assert np.isfinite(plot).all(), (series, options, plot)
    plot = np.asarray(recurrence_plot(np.array([3e38, -3e38], np.float32)))
    assert plot[0, 1] == np.finfo(np.float32).max and plot[0, 0] == 0  # saturates
    np.testing.assert_array_equal(
        recurrence_plot(np.array([3e38, -3e38], np.float32), normalize=True), [[0, 1], [1, 0]]
    )


@pytest.mark.parametrize("band_names", [42, [1, 2, 3, 4], None, 3.5])
def test_vegetation_indices_with_wrong_band_names_is_a_value_error(band_names):
    from pimc_jax.indices import vegetation_indices

    with pytest.raises(ValueError, match="band_names must be a sequence of band name strings"):
        vegetation_indices(np.zeros((2, 4), np.float32), band_names=band_names)
