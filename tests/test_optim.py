"""The optimizer (:mod:`pimc_jax.optim`) against hand formulas: the warmup-cosine schedule,
AdamW with weight decay on kernels only, global-norm clipping, and the schedule a resumed
run rebuilds for a longer ``total_steps``."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_configs import tiny_pretrain_config

from pimc_jax import launcher
from pimc_jax.optim import adamw, learning_rate_schedule, make_optimizer, warmup_cosine


def _hand_schedule(step: int, peak: float, total: int, warmup: int, end: float) -> float:
    """Linear from 0 to ``peak`` over ``warmup`` steps, then half a cosine to ``end`` at
    ``total``, ``end`` after it."""
    if step < warmup:
        return peak * step / warmup
    progress = min((step - warmup) / (total - warmup), 1.0)
    return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


@pytest.mark.parametrize(
    "peak, total, warmup, end",
    [(3e-3, 300, 30, 3e-5), (1.0, 10, 4, 0.0), (0.5, 7, 1, 0.1)],
)
def test_warmup_cosine_values_at_chosen_steps(peak, total, warmup, end):
    schedule = warmup_cosine(peak, total, warmup, end)
    steps = sorted(
        {
            0,
            1,
            warmup // 2,
            warmup - 1,
            warmup,
            warmup + 1,
            (warmup + total) // 2,
            total - 1,
            total,
            total + 5,
        }
    )
    for step in steps:
        want = _hand_schedule(step, peak, total, warmup, end)
        assert float(schedule(step)) == pytest.approx(want, rel=1e-5, abs=1e-9), step
    # Landmarks worked by hand: 0 at the start, the peak after warmup, half-way between peak
    # and end half-way through the decay, the end value at total_steps.
    assert float(schedule(0)) == 0.0
    assert float(schedule(warmup)) == pytest.approx(peak, rel=1e-6)
    if (total - warmup) % 2 == 0:
        middle = warmup + (total - warmup) // 2
        assert float(schedule(middle)) == pytest.approx((peak + end) / 2, rel=1e-5)
    assert float(schedule(total)) == pytest.approx(end, rel=1e-5, abs=1e-9)


def test_warmup_is_capped_so_that_a_short_run_still_decays():
    # 10 warmup steps asked for a 4-step run: warmup over 3 steps, the peak at step 3, the
    # end value at step 4.
    schedule = warmup_cosine(1.0, 4, 10, 0.25)
    np.testing.assert_allclose(
        [float(schedule(s)) for s in range(5)], [0.0, 1 / 3, 2 / 3, 1.0, 0.25], rtol=1e-6
    )


def test_schedule_edge_cases():
    # The end value defaults to 0.
    schedule = warmup_cosine(1.0, 10, 2)
    assert float(schedule(10)) == 0.0 and float(schedule(6)) == pytest.approx(0.5)
    # A one-step run takes its step at the peak (no warmup is left), then ends at the end
    # value; a zero-step schedule still builds and stays finite.
    one = warmup_cosine(1.0, 1, 5, 0.1)
    np.testing.assert_allclose([float(one(0)), float(one(1))], [1.0, 0.1], rtol=1e-6)
    assert np.isfinite(float(warmup_cosine(1.0, 0, 3)(0)))


def test_adamw_defaults_are_clip_1_and_betas_0_9_0_999():
    rng = np.random.default_rng(1)
    params = {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
    grads = [
        {"kernel": jnp.asarray(rng.normal(size=(3, 2)) * scale, jnp.float32)}
        for scale in (4.0, 0.1, 2.0)
    ]
    got = _run(adamw(lambda _: 0.1, weight_decay=0.01), params, grads)
    want = _numpy_adamw(params, grads, [0.1] * 3, b1=0.9, b2=0.999, eps=1e-8, wd=0.01, clip=1.0)
    np.testing.assert_allclose(got["kernel"], want["kernel"], rtol=2e-5, atol=1e-6)


def test_config_schedule_ends_at_end_factor_times_the_peak():
    config = tiny_pretrain_config(total_steps=20)
    config.optimizer.update(dict(learning_rate=0.2, end_factor=0.05, warmup_steps=5))
    schedule = learning_rate_schedule(config)
    for step in (0, 3, 5, 12, 20):
        want = _hand_schedule(step, 0.2, 20, 5, 0.01)
        assert float(schedule(step)) == pytest.approx(want, rel=1e-5, abs=1e-9)


def _numpy_adamw(params, grads_per_step, lrs, *, b1, b2, eps, wd, clip):
    """AdamW by its definition (Loshchilov & Hutter; Adam's bias correction, decoupled decay
    on rank ≥ 2 leaves only), after clipping the gradients to a global norm ``clip``."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs, strict=True), start=1):
        grads = {k: np.asarray(g, np.float64) for k, g in grads.items()}
        if clip:
            norm = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
            grads = {k: g * min(1.0, clip / norm) for k, g in grads.items()}
        for k in params:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            decay = wd * params[k] if params[k].ndim > 1 else 0.0
            params[k] = params[k] - lr * (m_hat / (np.sqrt(v_hat) + eps) + decay)
    return params


def _run(optimizer, params, grads_per_step):
    state = optimizer.init(params)
    for grads in grads_per_step:
        updates, state = optimizer.update(grads, state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
    return params


@pytest.mark.parametrize("clip", [None, 1.0])
def test_adamw_with_clipping_equals_the_hand_formula(clip):
    rng = np.random.default_rng(0)
    params = {
        "kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
        "scale": jnp.asarray(1.5, jnp.float32),
    }
    # Global norms ≈ 10, 0.3 and 5: the first and last are clipped, the second is not, so
    # the moments see differently scaled gradients and clipping changes the result.
    grads_per_step = []
    for norm in (10.0, 0.3, 5.0):
        raw = {k: rng.normal(size=np.shape(p)) for k, p in params.items()}
        total = np.sqrt(sum(np.sum(g * g) for g in raw.values()))
        grads_per_step.append(
            {k: jnp.asarray(g * norm / total, jnp.float32) for k, g in raw.items()}
        )
    schedule = warmup_cosine(0.1, 3, 1)
    optimizer = adamw(schedule, weight_decay=0.3, grad_clip_norm=clip, b1=0.8, b2=0.95)
    got = _run(optimizer, params, grads_per_step)
    # The update of step t (from 1) uses the schedule at t − 1.
    lrs = [float(schedule(t)) for t in range(3)]
    want = _numpy_adamw(params, grads_per_step, lrs, b1=0.8, b2=0.95, eps=1e-8, wd=0.3, clip=clip)
    for key in params:
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=1e-6, err_msg=key)
    if clip:
        unclipped = _numpy_adamw(
            params, grads_per_step, lrs, b1=0.8, b2=0.95, eps=1e-8, wd=0.3, clip=None
        )
        assert np.abs(unclipped["kernel"] - want["kernel"]).max() > 1e-3


def test_weight_decay_shrinks_kernels_only():
    # Zero gradients: Adam's step is 0, so the update is the decay alone, −lr·wd·p on
    # rank ≥ 2 leaves (kernels) and nothing on norms, biases and the temperature.
    params = {
        "kernel": jnp.full((2, 3), 2.0),
        "conv": jnp.full((3, 3, 1, 2), -1.0),
        "bias": jnp.full((3,), 2.0),
        "logit_scale": jnp.asarray(2.0),
    }
    optimizer = adamw(lambda _: 0.5, weight_decay=0.1, grad_clip_norm=1.0)
    zeros = jax.tree.map(jnp.zeros_like, params)
    got = _run(optimizer, params, [zeros])
    np.testing.assert_allclose(got["kernel"], 2.0 * (1 - 0.5 * 0.1), rtol=1e-6)
    np.testing.assert_allclose(got["conv"], -1.0 * (1 - 0.5 * 0.1), rtol=1e-6)
    np.testing.assert_array_equal(got["bias"], params["bias"])
    np.testing.assert_array_equal(got["logit_scale"], params["logit_scale"])


def test_make_optimizer_follows_the_config():
    config = tiny_pretrain_config(total_steps=4)
    config.optimizer.update(
        dict(learning_rate=0.05, warmup_steps=1, weight_decay=0.2, grad_clip_norm=0.5, b1=0.7)
    )
    config.optimizer.b2 = 0.95
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
    # Gradients of changing size and sign, so that the moments' rates and the clipping
    # (first and last step clipped, the second not) all show in the result.
    grads = [
        {"kernel": jnp.asarray(k, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}
        for k, b in (
            ([[3.0, -1.0], [2.0, 0.5]], [-4.0, 1.0]),
            ([[0.1, 0.05], [-0.1, 0.02]], [0.03, -0.1]),
            ([[-2.0, 1.5], [0.5, 1.0]], [2.0, 3.0]),
        )
    ]
    got = _run(make_optimizer(config), params, grads)
    lrs = [_hand_schedule(t, 0.05, 4, 1, 0.05 * config.optimizer.end_factor) for t in range(3)]
    want = _numpy_adamw(params, grads, lrs, b1=0.7, b2=0.95, eps=1e-8, wd=0.2, clip=0.5)
    for key in params:
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, err_msg=key)
    config.optimizer.name = "sgd"
    with pytest.raises(ValueError, match="adamw"):
        make_optimizer(config)


def _logged_rates(workdir) -> dict[int, float]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["learning_rate"] for row in rows if "learning_rate" in row}


def test_resumed_run_follows_the_schedule_rebuilt_for_a_longer_total(tmp_path):
    short = tiny_pretrain_config(total_steps=4)
    launcher.run(short, str(tmp_path))
    longer = tiny_pretrain_config(total_steps=8)
    launcher.run(longer, str(tmp_path))
    rates = _logged_rates(tmp_path)
    opt = short.optimizer
    end = opt.learning_rate * opt.end_factor
    # Step s is the update made with the schedule at s − 1: steps 1–4 on the 4-step
    # schedule, steps 5–8 on the 8-step one (which would have given other rates at 1–4).
    for step in range(1, 9):
        total = 4 if step <= 4 else 8
        want = _hand_schedule(step - 1, opt.learning_rate, total, opt.warmup_steps, end)
        assert rates[step] == pytest.approx(want, rel=1e-5, abs=1e-10), step
    assert _hand_schedule(4, opt.learning_rate, 8, opt.warmup_steps, end) != pytest.approx(
        _hand_schedule(4, opt.learning_rate, 4, opt.warmup_steps, end)
    )
