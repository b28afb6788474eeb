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
from tiny_configs import ROOT, TWO_SENSOR, perturbed, tiny_pretrain_config

from pimc_jax import launcher, parallel
from pimc_jax.augment import flip_rotate
from pimc_jax.checkpoint import CheckpointStore, load_params, read_meta
from pimc_jax.data.pipeline import PairBatches
from pimc_jax.models import PIMCParams
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


def test_two_image_views_get_their_own_flips_and_turns():
    """Tower 2's crops are flipped and turned with the step's key, tower 1's with a key of
    its own, each crop by its global row (:func:`pimc_jax.augment.flip_rotate`): the
    default step equals the unaugmented step on crops turned by hand."""
    setup = build_pretraining(tiny_pretrain_config(**TWO_SENSOR))
    spec, optimizer = setup.spec, setup.optimizer
    state = create_train_state(spec, optimizer, jax.random.key(0))
    batch = next(iter(PairBatches(setup.sampler, batch_size=8, seed=3, end_step=1)))
    key = jax.random.key(5)

    def step_loss(inputs, **kwargs) -> float:
        step = jax.jit(lambda s, b: train_step(s, b, key, spec=spec, optimizer=optimizer, **kwargs))
        return float(step(state, inputs)[1]["loss"])

    rng = jax.random.fold_in(key, 0)  # the key folded with step 0
    rows = np.arange(len(batch["image"]))
    by_hand = dict(
        batch,
        s1_image=flip_rotate(jax.random.fold_in(rng, 1_000_003), batch["s1_image"], rows),
        image=flip_rotate(rng, batch["image"], rows),
    )
    np.testing.assert_allclose(step_loss(batch), step_loss(by_hand, augment=False), rtol=1e-6)


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
    dump = tmp_path / "restored_on_one.npz"
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
leaves = {{}}
for name, tree in (("loaded", params.variables), ("params", p), ("opt_state", o)):
    for i, leaf in enumerate(jax.tree.leaves(tree)):
        leaves[f"{{name}}_{{i:04d}}"] = np.asarray(leaf)
np.savez({str(dump)!r}, **leaves)
"""
    result = _run_script(code, {"XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    on_one = np.load(dump)

    # The same checkpoint restored here, on four devices: equal leaf by leaf, bit for bit,
    # the optimizer state included.
    here = load_params(tmp_path)
    setup = build_pretraining(tiny_pretrain_config(total_steps=2))
    fresh = jax.device_get(create_train_state(here.spec, setup.optimizer, jax.random.key(0)))
    params, opt_state, _ = CheckpointStore(tmp_path).restore(2, fresh.params, fresh.opt_state)
    for name, tree in (("loaded", here.variables), ("params", params), ("opt_state", opt_state)):
        leaves = _leaves(tree)
        assert len([k for k in on_one.files if k.startswith(name + "_")]) == len(leaves)
        for i, leaf in enumerate(leaves):
            other = on_one[f"{name}_{i:04d}"]
            assert other.dtype == leaf.dtype and other.shape == leaf.shape, (name, i)
            np.testing.assert_array_equal(other, leaf, err_msg=f"{name} leaf {i}")
    for a, b in zip(_leaves(params), _leaves(here.variables), strict=True):
        np.testing.assert_array_equal(a, b)
    # What was saved is what training reached: the logged parameter norm of step 2, and an
    # Adam state that counted two updates and holds non-trivial moments.
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    logged = next(row["param_norm"] for row in rows if row["step"] == 2)
    norm = np.sqrt(sum(float(np.sum(np.square(x.astype(np.float64)))) for x in _leaves(params)))
    assert norm == pytest.approx(logged, rel=1e-5)
    adam = [
        x
        for x in jax.tree.leaves(opt_state, is_leaf=lambda x: hasattr(x, "nu"))
        if hasattr(x, "nu")
    ]
    assert len(adam) == 1 and int(adam[0].count) == 2
    assert jax.tree.structure(adam[0].nu) == jax.tree.structure(params)
    # Every gradient so far reached the second moments, except those of the residual
    # branches behind their zero-initialised last scale (norm2), which the first update (at
    # learning rate 0, warmup) left at zero.
    for path, v in jax.tree_util.tree_flatten_with_path(adam[0].nu)[0]:
        name = jax.tree_util.keystr(path)
        assert np.all(v >= 0), name
        hidden = "ResidualBlock" in name and "norm2" not in name
        assert np.any(v > 0) != hidden, name


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


def test_bfloat16_step_is_within_tolerance_of_float32():
    import dataclasses

    import optax

    config = tiny_pretrain_config()
    setup = build_pretraining(config)
    state = jax.device_get(create_train_state(setup.spec, setup.optimizer, jax.random.key(0)))
    state = state.replace(params=perturbed(PIMCParams(state.params, setup.spec)).variables)
    batch = next(PairBatches(setup.sampler, batch_size=16, seed=0, end_step=1))
    # Plain SGD makes the update −lr × the gradient, so the two updates compare gradients.
    sgd = optax.sgd(1.0)
    state = state.replace(opt_state=sgd.init(state.params))
    results = {}
    for dtype in ("float32", "bfloat16"):
        spec = dataclasses.replace(setup.spec, dtype=dtype)
        step = jax.jit(
            lambda s, b, spec=spec: train_step(
                s, b, jax.random.key(1), spec=spec, optimizer=sgd, augment=False
            )
        )
        new_state, metrics = step(state, batch)
        assert all(x.dtype == np.float32 for x in jax.tree.leaves(new_state.params))
        update = np.concatenate(
            [
                (np.asarray(n) - np.asarray(o)).ravel()
                for n, o in zip(
                    jax.tree.leaves(new_state.params), jax.tree.leaves(state.params), strict=True
                )
            ]
        )
        results[dtype] = (metrics, update)
    (m32, u32), (m16, u16) = results["float32"], results["bfloat16"]
    # bfloat16 keeps 8 bits of mantissa (relative rounding 2^-8 ≈ 0.4 %); through a few
    # layers the loss stays within 2 % and the gradient within 10 % of float32.
    assert float(m16["loss"]) == pytest.approx(float(m32["loss"]), rel=2e-2)
    assert float(m16["grad_norm"]) == pytest.approx(float(m32["grad_norm"]), rel=1e-1)
    assert np.linalg.norm(u16 - u32) < 0.1 * np.linalg.norm(u32)
    assert np.any(u16 != u32)  # the compute dtype took effect


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
