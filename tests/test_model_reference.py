"""The whole model and one training step against the independent NumPy implementation
(``tests/numpy_reference.py``, float64): forward passes with non-trivial weights, the loss,
its gradient by central finite differences of the NumPy loss, and the step's update."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import pytest
from jax.test_util import check_grads
from tiny_configs import perturbed, strided_encoder, tiny_model_spec

from pimc_jax.augment import flip_rotate
from pimc_jax.loss import symmetric_infonce
from pimc_jax.models import PIMC, EncoderSpec, init_params
from pimc_jax.step import TrainState, create_train_state, train_step

NAMES = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")

# Three tower layouts: the tiny one-stage tower with GroupNorm and input means, a two-stage
# tower with the ImageNet stem (stride-2 stem, max-pool, a stride-2 projected block), and
# a plain tower (no normalisation: biases and the zero-initialised branch scale).
LAYOUTS = {
    "tiny": EncoderSpec(
        stage_sizes=(1,), widths=(8,), stem_width=8, norm_groups=4, input_means=True
    ),
    "strided": strided_encoder((8, 12), norm_groups=4),
    "plain": EncoderSpec(stage_sizes=(1, 1), widths=(4, 6), stem_width=4, norm_groups=0),
}


def _spec(layout: str, **overrides):
    fields = dict(
        head_hidden_dims=(16,),
        embedding_dim=6,
        rp_size=8,
        crop_size=8,
        indices=("ndvi", "evi", "savi"),
        image_mean=(0.1, 0.2, 0.05),
        image_std=(0.5, 0.25, 2.0),
    )
    return tiny_model_spec(LAYOUTS[layout], **{**fields, **overrides})


def _clean_batch(n: int, spec, seed: int = 0, num_dates: int = 9) -> dict[str, np.ndarray]:
    """``n`` pixels with plausible, fully valid reflectance on irregular increasing dates
    and random crops."""
    rng = np.random.default_rng(seed)
    bands = rng.uniform(0.02, 0.5, (n, num_dates, len(NAMES))).astype(np.float32)
    gaps = rng.uniform(3.0, 40.0, (n, num_dates))
    dates = np.cumsum(gaps, axis=1).astype(np.float32)
    image = rng.uniform(0.0, 0.4, (n, spec.crop_size, spec.crop_size, 3)).astype(np.float32)
    return {"bands": bands, "dates": dates, "mask": np.ones((n, num_dates), bool), "image": image}


def _reference_inputs(spec, batch) -> tuple[np.ndarray, np.ndarray]:
    plots = np.stack(
        [
            ref.pixel_plots(b, d, NAMES, spec)
            for b, d in zip(batch["bands"], batch["dates"], strict=True)
        ]
    )
    crops = ref.standardized_crops(batch["image"], spec.image_mean, spec.image_std)
    return plots, crops


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_model_forward_equals_numpy(layout):
    spec = _spec(layout)
    params = perturbed(init_params(spec, 0), seed=3)
    # Every residual branch is live: the zero-initialised scales were perturbed away.
    branch = params.variables["params"]["rp_encoder"]["ResidualBlock_0"]["norm2"]
    assert np.min(np.abs(jax.tree.leaves(branch)[-1])) > 1e-4
    rng = np.random.default_rng(1)
    rp = rng.normal(size=(5, 8, 8, spec.rp_input_channels)).astype(np.float32)
    image = rng.normal(size=(5, 8, 8, 3)).astype(np.float32)
    got = PIMC(spec).apply(params.variables, rp, image)
    want = ref.model(params.variables, spec, rp, image)
    np.testing.assert_allclose(got["z_rp"], want["z_rp"], rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(got["z_image"], want["z_image"], rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(float(got["temperature"]), want["temperature"], rtol=1e-6)
    # Features of the backbone alone, including the appended input means.
    features, _ = PIMC(spec).apply(params.variables, rp, method=PIMC.encode_rp)
    want_features = ref.resnet(params.variables["params"]["rp_encoder"], spec.rp_encoder, rp)
    np.testing.assert_allclose(features, want_features, rtol=2e-4, atol=2e-5)


def test_temperature_is_clipped_at_the_max_logit_scale():
    spec = _spec("tiny")
    params = init_params(spec, 0)
    variables = jax.tree.map(lambda x: x, params.variables)
    variables["params"]["logit_scale"] = jnp.asarray(np.log(1e4), jnp.float32)
    rp = np.zeros((1, 8, 8, spec.rp_input_channels), np.float32)
    image = np.zeros((1, 8, 8, 3), np.float32)
    out = PIMC(spec).apply(variables, rp, image)
    assert float(out["temperature"]) == pytest.approx(1.0 / spec.max_logit_scale, rel=1e-6)
    # A learnable τ starts at the configured one: logit_scale = log(1/τ).
    learnable = dataclasses.replace(spec, learnable_temperature=True, temperature=0.2)
    start = init_params(learnable, 0).variables
    assert float(start["params"]["logit_scale"]) == pytest.approx(np.log(5.0), rel=1e-6)
    assert float(PIMC(learnable).apply(start, rp, image)["temperature"]) == pytest.approx(0.2)
    fixed = dataclasses.replace(spec, learnable_temperature=False, temperature=0.25)
    fixed_out = PIMC(fixed).apply(init_params(fixed, 0).variables, rp, image)
    assert float(fixed_out["temperature"]) == pytest.approx(0.25)


def _loss_and_grads(spec, variables, plots, crops):
    def loss_fn(v):
        out = PIMC(spec).apply(v, plots, crops)
        return symmetric_infonce(out["z_rp"], out["z_image"], out["temperature"])[0]

    return jax.value_and_grad(loss_fn)(variables)


def _numpy_loss(spec, variables, plots, crops) -> float:
    out = ref.model(variables, spec, plots, crops)
    return ref.symmetric_infonce(out["z_rp"], out["z_image"], out["temperature"])


def _directional_fd(spec, variables, direction, plots, crops, eps=1e-6) -> float:
    """Central difference of the float64 NumPy loss along ``direction`` (a small step, so
    that no ReLU or max-pool kink lies within it)."""
    plus = jax.tree.map(lambda p, d: np.asarray(p, np.float64) + eps * d, variables, direction)
    minus = jax.tree.map(lambda p, d: np.asarray(p, np.float64) - eps * d, variables, direction)
    return (_numpy_loss(spec, plus, plots, crops) - _numpy_loss(spec, minus, plots, crops)) / (
        2 * eps
    )


def _random_direction(tree, seed):
    leaves, treedef = jax.tree.flatten(tree)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [rng.normal(size=np.shape(x)) for x in leaves])


def _dot(a, b) -> float:
    return float(
        sum(
            np.vdot(np.asarray(x, np.float64), y)
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )
    )


@pytest.mark.parametrize("layout", ["strided"])
def test_model_loss_and_gradient_equal_numpy_finite_differences(layout):
    spec = _spec(layout)
    variables = perturbed(init_params(spec, 0), seed=5).variables
    rng = np.random.default_rng(2)
    plots = rng.normal(size=(6, 8, 8, spec.rp_input_channels)).astype(np.float32)
    crops = rng.normal(size=(6, 8, 8, 3)).astype(np.float32)
    loss, grads = _loss_and_grads(spec, variables, plots, crops)
    np.testing.assert_allclose(float(loss), _numpy_loss(spec, variables, plots, crops), rtol=1e-5)
    for seed in range(3):
        direction = _random_direction(variables, seed)
        fd = _directional_fd(spec, variables, direction, plots, crops)
        np.testing.assert_allclose(_dot(grads, direction), fd, rtol=1e-4, atol=1e-6)
    # One leaf at a time: the temperature, and a kernel deep in the image tower.
    for path in (("logit_scale",), ("image_encoder", "ResidualBlock_0", "conv1", "kernel")):
        direction = jax.tree.map(np.zeros_like, _random_direction(variables, 9))
        node, grad_node = direction["params"], grads["params"]
        for key in path[:-1]:
            node, grad_node = node[key], grad_node[key]
        node[path[-1]] = np.random.default_rng(4).normal(size=np.shape(node[path[-1]]))
        fd = _directional_fd(spec, variables, direction, plots, crops)
        got = float(np.vdot(np.asarray(grad_node[path[-1]], np.float64), node[path[-1]]))
        np.testing.assert_allclose(got, fd, rtol=1e-4, atol=1e-6, err_msg=str(path))


def test_infonce_gradients_pass_jax_check_grads():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 4))
    b = rng.normal(size=(5, 4))

    def loss(a, b, log_scale):
        unit = lambda z: z / jnp.linalg.norm(z, axis=1, keepdims=True)
        return symmetric_infonce(unit(a), unit(b), jnp.exp(-log_scale))[0]

    args = tuple(jnp.asarray(x, jnp.float32) for x in (a, b, 1.5))
    check_grads(loss, args, order=1, modes=("rev",), eps=1e-2, atol=5e-2, rtol=5e-2)


def test_train_step_loss_metrics_and_update_equal_numpy():
    """With plain SGD the step must move the parameters by −lr × the gradient of the NumPy
    loss on NumPy-built plots of the raw batch, and report that loss and retrieval."""
    spec = _spec("tiny")
    variables = perturbed(init_params(spec, 0), seed=7).variables
    lr = 1e-2
    optimizer = optax.sgd(lr)
    state = TrainState(jnp.zeros((), jnp.int32), variables, optimizer.init(variables))
    batch = _clean_batch(6, spec, seed=3)
    new_state, metrics = jax.jit(
        lambda s, b: train_step(
            s, b, jax.random.key(0), spec=spec, optimizer=optimizer, augment=False
        )
    )(state, batch)
    plots, crops = _reference_inputs(spec, batch)
    np.testing.assert_allclose(
        float(metrics["loss"]), _numpy_loss(spec, variables, plots, crops), rtol=1e-5
    )
    out = ref.model(variables, spec, plots, crops)
    logits = out["z_rp"] @ out["z_image"].T
    assert float(metrics["rp_to_image_top1"]) == pytest.approx(
        np.mean(logits.argmax(1) == np.arange(6))
    )
    assert float(metrics["image_to_rp_top1"]) == pytest.approx(
        np.mean(logits.argmax(0) == np.arange(6))
    )
    assert int(new_state.step) == 1
    delta = jax.tree.map(
        lambda new, old: np.asarray(new, np.float64) - np.asarray(old, np.float64),
        new_state.params,
        variables,
    )
    for seed in range(2):
        direction = _random_direction(variables, 20 + seed)
        fd = _directional_fd(spec, variables, direction, plots, crops)
        np.testing.assert_allclose(_dot(delta, direction), -lr * fd, rtol=2e-3, atol=1e-6)
    # The loss falls along the step actually taken (first order: −lr ‖∇L‖²).
    after = _numpy_loss(spec, jax.device_get(new_state.params), plots, crops)
    assert after < _numpy_loss(spec, variables, plots, crops)
    # The logged norms: SGD moved the parameters by −lr · ∇L, so ‖∇L‖ = ‖Δ‖ / lr.
    squares = lambda tree: sum(np.sum(np.square(np.float64(x))) for x in jax.tree.leaves(tree))
    assert float(metrics["grad_norm"]) == pytest.approx(np.sqrt(squares(delta)) / lr, rel=1e-4)
    assert float(metrics["param_norm"]) == pytest.approx(
        np.sqrt(squares(jax.device_get(new_state.params))), rel=1e-5
    )
    assert float(metrics["temperature"]) == pytest.approx(out["temperature"], rel=1e-6)


def test_train_state_starts_from_the_given_key_and_the_step_augments_by_default():
    spec = _spec("tiny")
    optimizer = optax.sgd(1e-2)
    key = jax.random.key(3)
    state = create_train_state(spec, optimizer, key)
    assert state.step.dtype == jnp.int32 and int(state.step) == 0
    for got, want in zip(
        jax.tree.leaves(state.params),
        jax.tree.leaves(init_params(spec, key).variables),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)
    assert not all(  # another key, other parameters
        np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(state.params),
            jax.tree.leaves(init_params(spec, 0).variables),
            strict=True,
        )
    )
    batch = _clean_batch(6, spec, seed=5)
    rows = jnp.arange(len(batch["image"]))

    def step_loss(**kwargs):
        return jax.jit(
            lambda s, b: train_step(s, b, key, spec=spec, optimizer=optimizer, **kwargs)[1]["loss"]
        )

    default, plain = step_loss(), step_loss(augment=False)
    loss = float(default(state, batch))
    assert loss == float(step_loss(augment=True)(state, batch))
    assert loss != pytest.approx(float(plain(state, batch)), rel=1e-6)
    # What is augmented: the image crops, flipped and turned by the augmentation module
    # with the step's key (folded with step 0) and each crop's row; the plots are not.
    turned = dict(batch, image=flip_rotate(jax.random.fold_in(key, 0), batch["image"], rows))
    np.testing.assert_allclose(loss, float(plain(state, turned)), rtol=1e-6)
