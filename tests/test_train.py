"""Pre-training: device-count invariance, exact resume, cross-topology restore, multi-process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from tiny_configs import ROOT, TWO_SENSOR, tiny_pretrain_config

from pimc_jax import launcher, parallel
from pimc_jax.checkpoint import CheckpointStore, load_params, read_meta
from pimc_jax.data.pipeline import PairBatches
from pimc_jax.step import create_train_state, make_parallel_step, train_step
from pimc_jax.train import build_pretraining


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


# The paper's pairing, and a two-sensor one (Sentinel-1 crop ↔ Sentinel-2 crop).
PAIRINGS = pytest.mark.parametrize("overrides", [{}, TWO_SENSOR], ids=["s2_rp-s2_image", "s1s2"])


@PAIRINGS
def test_one_and_four_devices_give_the_same_losses(overrides):
    config = tiny_pretrain_config(**overrides)
    setup = build_pretraining(config)
    spec, optimizer = setup.spec, setup.optimizer
    state = jax.device_get(create_train_state(spec, optimizer, jax.random.key(0)))
    batches = list(PairBatches(setup.sampler, batch_size=16, seed=3, end_step=4))
    rng = jax.random.key_data(jax.random.key(1))

    single = jax.jit(lambda s, b, r: train_step(s, b, r, spec=spec, optimizer=optimizer))
    single_state, single_losses = state, []
    for batch in batches:
        single_state, metrics = single(single_state, batch, rng)
        single_losses.append(float(metrics["loss"]))

    assert jax.local_device_count() == 4
    parallel_step = make_parallel_step(spec, optimizer)
    replicated, parallel_losses = parallel.replicate(state), []
    for batch in batches:
        replicated, metrics = parallel_step(
            replicated, parallel.shard_batch(batch), parallel.replicate(rng)
        )
        parallel_losses.append(float(metrics["loss"][0]))
    np.testing.assert_allclose(parallel_losses, single_losses, rtol=2e-4)
    for a, b in zip(
        _leaves(parallel.unreplicate(replicated).params), _leaves(single_state.params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5)


class _Crash(Exception):
    pass


@PAIRINGS
def test_killed_run_resumes_to_the_same_params(tmp_path, monkeypatch, overrides):
    config = tiny_pretrain_config(**overrides)
    launcher.run(config, str(tmp_path / "straight"))

    # Crash while fetching the batch of step 4, i.e. after the checkpoint of step 2.
    original_next = PairBatches.__next__

    def crashing_next(self):
        if self._next_step == 4:
            raise _Crash
        return original_next(self)

    monkeypatch.setattr(PairBatches, "__next__", crashing_next)
    with pytest.raises(_Crash):
        launcher.run(config, str(tmp_path / "resumed"))
    monkeypatch.setattr(PairBatches, "__next__", original_next)
    assert CheckpointStore(tmp_path / "resumed").latest_step() in (2, 3)
    launcher.run(config, str(tmp_path / "resumed"))

    straight = load_params(tmp_path / "straight")
    resumed = load_params(tmp_path / "resumed")
    for a, b in zip(_leaves(straight.variables), _leaves(resumed.variables), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed/metrics.jsonl").open()]
    assert steps[-1] == config.total_steps


def test_changed_model_refuses_to_resume(tmp_path):
    launcher.run(tiny_pretrain_config(total_steps=2), str(tmp_path))
    with pytest.raises(ValueError, match="different model"):
        launcher.run(tiny_pretrain_config(**{"model.embedding_dim": 4}), str(tmp_path))


def test_corrupt_checkpoint_is_reported_and_kept(tmp_path):
    launcher.run(tiny_pretrain_config(total_steps=2), str(tmp_path))
    step_dir = tmp_path / "checkpoints" / "2"
    for path in (step_dir / "params").rglob("*"):
        if path.is_file() and "manifest" in path.name:
            path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="could not be restored"):
        load_params(tmp_path)
    assert step_dir.exists()


def _run_script(code: str, env_extra: dict, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra, PYTHONPATH=str(ROOT / "tests"))
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_checkpoint_from_four_devices_restores_on_one(tmp_path):
    launcher.run(tiny_pretrain_config(total_steps=2), str(tmp_path))
    assert read_meta(tmp_path)["step"] == 2
    code = f"""
import jax, numpy as np, pimc_jax
from pimc_jax.checkpoint import CheckpointStore
from pimc_jax.optim import make_optimizer
from pimc_jax.step import create_train_state
from tiny_configs import tiny_pretrain_config
assert jax.device_count() == 1, jax.devices()
params = pimc_jax.load_params({str(tmp_path)!r})
config = tiny_pretrain_config(total_steps=2)
optimizer = make_optimizer(config)
state = jax.device_get(create_train_state(params.spec, optimizer, jax.random.key(0)))
p, o, meta = CheckpointStore({str(tmp_path)!r}).restore(2, state.params, state.opt_state)
print("NORM", sum(float(np.sum(np.square(x))) for x in jax.tree.leaves(params.variables)))
"""
    result = _run_script(code, {"XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    norm = float(result.stdout.split("NORM")[1])
    here = load_params(tmp_path)
    expected = sum(float(np.sum(np.square(x))) for x in jax.tree.leaves(here.variables))
    np.testing.assert_allclose(norm, expected, rtol=1e-6)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_train_and_agree(tmp_path):
    port = _free_port()
    code = f"""
import json, sys
from pimc_jax import launcher
from tiny_configs import tiny_pretrain_config
process_id = int(sys.argv[1])
config = tiny_pretrain_config(total_steps=3)
config.distributed.coordinator_address = "127.0.0.1:{port}"
config.distributed.num_processes = 2
config.distributed.process_id = process_id
metrics = launcher.run(config, {str(tmp_path)!r})
import jax
print("RESULT", json.dumps(dict(metrics, devices=jax.device_count())))
"""
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT / "tests"),
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    results = [json.loads(out.split("RESULT")[1]) for out, _ in outputs]
    assert results[0]["devices"] == 4
    assert results[0]["param_norm"] == pytest.approx(results[1]["param_norm"], rel=1e-6)
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-6)
    assert read_meta(tmp_path)["step"] == 3
    assert Path(tmp_path, "metrics.jsonl").exists()


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    import signal
    import time

    code = f"""
from pimc_jax import launcher
from tiny_configs import tiny_pretrain_config
launcher.run(tiny_pretrain_config(total_steps=100000, checkpoint_every_steps=100000),
             {str(tmp_path)!r})
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"), JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    saved = CheckpointStore(tmp_path).latest_step()
    assert saved is not None and saved >= 3
    assert read_meta(tmp_path)["step"] == saved


def test_bfloat16_compute_trains_with_float32_params():
    config = tiny_pretrain_config(**{"model.dtype": "bfloat16"})
    setup = build_pretraining(config)
    state = jax.device_get(create_train_state(setup.spec, setup.optimizer, jax.random.key(0)))
    batch = next(PairBatches(setup.sampler, batch_size=16, seed=0, end_step=1))
    step = jax.jit(
        lambda s, b: train_step(s, b, jax.random.key(1), spec=setup.spec, optimizer=setup.optimizer)
    )
    new_state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(new_state.params))


def test_loaded_params_encode_pixels_and_crops(tmp_path):
    import pimc_jax
    from pimc_jax.data.synthetic import make_patch

    config = tiny_pretrain_config(total_steps=2)
    launcher.run(config, str(tmp_path))
    params = pimc_jax.load_params(tmp_path / "checkpoints" / "2")
    patch = make_patch(5, 0, size=16)
    series = patch.bands[:, :3, 0].transpose(1, 0, 2)  # 3 pixels, (N, T, C)
    crops = np.random.default_rng(0).uniform(0, 0.3, (3, 8, 8, 4)).astype(np.float32)
    out = pimc_jax.encode(
        params,
        {"bands": series, "dates": patch.dates, "band_names": patch.band_names, "image": crops},
    )
    assert out["rp"].shape == (3, config.model.embedding_dim)
    assert out["image"].shape == (3, config.model.embedding_dim)
    assert np.all(np.isfinite(out["rp"])) and np.all(np.isfinite(out["image"]))
    # Different pixels of a trained model are embedded differently.
    assert not np.allclose(out["rp"][0], out["rp"][1])
