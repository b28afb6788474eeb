"""symmetric_infonce against a NumPy reference, on one device and over a device axis."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pimc_jax.loss import symmetric_infonce


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _numpy_infonce(z_a, z_b, temperature):
    """½[CE(logits, diag) + CE(logitsᵀ, diag)] written out with NumPy in float64."""
    logits = z_a.astype(np.float64) @ z_b.astype(np.float64).T / temperature

    def ce(scores):
        scores = scores - scores.max(axis=1, keepdims=True)
        log_probs = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
        return -np.mean(np.diag(log_probs))

    top1_a2b = np.mean(np.argmax(logits, 1) == np.arange(len(z_a)))
    top1_b2a = np.mean(np.argmax(logits.T, 1) == np.arange(len(z_a)))
    return 0.5 * (ce(logits) + ce(logits.T)), top1_a2b, top1_b2a


@pytest.fixture
def embeddings():
    rng = np.random.default_rng(0)
    z_a = _unit(rng.normal(size=(16, 8))).astype(np.float32)
    # Correlated pairs so that retrieval is neither perfect nor at chance.
    z_b = _unit(z_a + 0.8 * rng.normal(size=z_a.shape)).astype(np.float32)
    return z_a, z_b


def test_matches_numpy_reference(embeddings):
    z_a, z_b = embeddings
    loss, metrics = symmetric_infonce(z_a, z_b, 0.1)
    ref_loss, ref_a2b, ref_b2a = _numpy_infonce(z_a, z_b, 0.1)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["a2b_top1"], ref_a2b)
    np.testing.assert_allclose(metrics["b2a_top1"], ref_b2a)
    assert 0.0 < ref_a2b < 1.0


def test_hand_computed_two_pairs():
    # Orthogonal unit vectors, τ = 1: logits = I, each row's CE = log(1 + e^-1) - ... by hand:
    # CE = -log(e^1 / (e^1 + e^0)) = log(1 + e^-1).
    z = np.eye(2, dtype=np.float32)
    loss, metrics = symmetric_infonce(z, z, 1.0)
    np.testing.assert_allclose(loss, np.log1p(np.exp(-1.0)), rtol=1e-6)
    assert metrics["a2b_top1"] == 1.0


def test_invariant_to_permuting_the_batch(embeddings):
    z_a, z_b = embeddings
    perm = np.random.default_rng(1).permutation(len(z_a))
    loss, _ = symmetric_infonce(z_a, z_b, 0.07)
    permuted, _ = symmetric_infonce(z_a[perm], z_b[perm], 0.07)
    np.testing.assert_allclose(loss, permuted, rtol=1e-6)


def test_swapping_modalities_keeps_the_loss(embeddings):
    z_a, z_b = embeddings
    np.testing.assert_allclose(
        symmetric_infonce(z_a, z_b, 0.2)[0], symmetric_infonce(z_b, z_a, 0.2)[0], rtol=1e-6
    )


def _towers(params, x_a, x_b):
    z_a = x_a @ params["w_a"]
    z_b = jnp.tanh(x_b @ params["w_b"])
    norm = lambda z: z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    return norm(z_a), norm(z_b)


def test_pmap_over_four_devices_equals_single_device_loss_and_gradient():
    devices = jax.local_device_count()
    assert devices == 4, "tests/conftest.py forces 4 CPU devices"
    rng = np.random.default_rng(2)
    params = {
        "w_a": rng.normal(size=(6, 5)).astype(np.float32),
        "w_b": rng.normal(size=(7, 5)).astype(np.float32),
    }
    x_a = rng.normal(size=(32, 6)).astype(np.float32)
    x_b = rng.normal(size=(32, 7)).astype(np.float32)
    temperature = 0.3

    def single(p):
        return symmetric_infonce(*_towers(p, x_a, x_b), temperature)[0]

    ref_loss, ref_grads = jax.value_and_grad(single)(params)

    def per_device(p, xa, xb):
        loss_fn = lambda q: symmetric_infonce(*_towers(q, xa, xb), temperature, "d")[0]
        loss, grads = jax.value_and_grad(loss_fn)(p)
        return loss, jax.lax.pmean(grads, "d")

    split = lambda x: x.reshape(devices, -1, *x.shape[1:])
    replicated = jax.tree.map(lambda x: np.broadcast_to(x, (devices, *x.shape)), params)
    loss, grads = jax.pmap(per_device, axis_name="d")(replicated, split(x_a), split(x_b))
    np.testing.assert_allclose(loss, np.full(devices, ref_loss), rtol=1e-5)
    for name in params:
        for d in range(devices):
            np.testing.assert_allclose(grads[name][d], ref_grads[name], rtol=1e-4, atol=1e-6)
