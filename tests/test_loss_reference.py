"""Symmetric InfoNCE's loss and metrics against the NumPy reference and hand-counted
retrieval, with embeddings whose two retrieval directions disagree."""

from __future__ import annotations

import numpy as np
import numpy_reference as ref
import pytest

from pimc_jax.loss import symmetric_infonce


def test_loss_and_metrics_equal_the_reference():
    rng = np.random.default_rng(3)
    z_a = rng.normal(size=(6, 4))
    z_b = z_a + rng.normal(scale=0.9, size=(6, 4))
    z_a /= np.linalg.norm(z_a, axis=1, keepdims=True)
    z_b /= np.linalg.norm(z_b, axis=1, keepdims=True)
    similarity = z_a @ z_b.T
    a2b = np.mean(similarity.argmax(axis=1) == np.arange(6))
    b2a = np.mean(similarity.argmax(axis=0) == np.arange(6))
    assert a2b != b2a  # the two directions are told apart
    loss, metrics = symmetric_infonce(z_a.astype(np.float32), z_b.astype(np.float32), 0.2)
    want = ref.symmetric_infonce(z_a, z_b, 0.2)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert set(metrics) == {"loss", "a2b_top1", "b2a_top1", "temperature"}
    assert float(metrics["loss"]) == pytest.approx(want, rel=1e-5)
    assert float(metrics["a2b_top1"]) == pytest.approx(a2b)
    assert float(metrics["b2a_top1"]) == pytest.approx(b2a)
    assert float(metrics["temperature"]) == pytest.approx(0.2)
    assert all(np.asarray(v).dtype == np.float32 for v in metrics.values())
