"""The encoders: what normalisation lets a plot tower see, against a NumPy forward pass."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_reference import num_groups
from tiny_configs import perturbed, tiny_model_spec

from pimc_jax.models import (
    PIMC,
    EncoderSpec,
    ProjectionHead,
    ResNetEncoder,
    _groups,
    init_params,
)


def _conv_same(x: np.ndarray, kernel: np.ndarray, stride: int = 1) -> np.ndarray:
    """NumPy ``(N, H, W, C) * (k, k, C, O)`` convolution, zero 'SAME' padding (k odd)."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            out += np.einsum("nhwc,co->nhwo", padded[:, i : i + h, j : j + w], kernel[i, j])
    return out[:, ::stride, ::stride]


def test_plain_encoder_at_init_matches_numpy_and_sees_the_level():
    encoder = ResNetEncoder(stage_sizes=(1, 1), widths=(4, 6), stem_width=4, norm_groups=0)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    variables = encoder.init(jax.random.key(0), jnp.asarray(x))
    params = jax.tree.map(np.asarray, variables["params"])
    # The residual branches start at zero (norm2 scales), so each block is the identity
    # plus its shortcut; non-zero biases, so the reference checks that they are added.
    assert not np.any(params["ResidualBlock_0"]["norm2"])
    params["Conv_0"]["bias"] = np.linspace(-0.2, 0.3, 4, dtype=np.float32)
    params["ResidualBlock_1"]["proj_conv"]["bias"] = np.full(6, 0.1, np.float32)
    got = np.asarray(encoder.apply({"params": params}, jnp.asarray(x)))
    # Reference: relu(stem conv + b); block 0 the identity; block 1 relu(1×1 stride-2 proj).
    stem = np.maximum(_conv_same(x, params["Conv_0"]["kernel"]) + params["Conv_0"]["bias"], 0)
    proj = params["ResidualBlock_1"]["proj_conv"]
    shortcut = np.maximum(_conv_same(stem, proj["kernel"], stride=2) + proj["bias"], 0)
    np.testing.assert_allclose(got, shortcut.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)

    # A constant plot at two levels: the plain encoder tells them apart, GroupNorm cannot.
    flat = np.ones((1, 8, 8, 3), np.float32)
    plain = encoder.apply(variables, jnp.asarray(np.concatenate([0.2 * flat, 0.7 * flat])))
    grouped = ResNetEncoder(stage_sizes=(1, 1), widths=(4, 6), stem_width=4, norm_groups=2)
    grouped_vars = grouped.init(jax.random.key(0), jnp.asarray(flat))
    normed = grouped.apply(grouped_vars, jnp.asarray(np.concatenate([0.2 * flat, 0.7 * flat])))
    assert np.abs(np.asarray(plain[0] - plain[1])).max() > 1e-2
    np.testing.assert_allclose(np.asarray(normed[0]), np.asarray(normed[1]), atol=1e-3)


def test_input_means_append_each_channels_spatial_mean_to_the_pooled_features():
    x = np.random.default_rng(1).normal(0.4, 1.0, size=(3, 8, 8, 5)).astype(np.float32)
    kwargs = dict(stage_sizes=(1, 1), widths=(4, 6), stem_width=4, norm_groups=2)
    plain = ResNetEncoder(**kwargs)
    with_means = ResNetEncoder(**kwargs, input_means=True)
    variables = plain.init(jax.random.key(0), jnp.asarray(x))
    # The means add no parameters: one tree serves both encoders.
    assert jax.tree.structure(with_means.init(jax.random.key(0), jnp.asarray(x))) == (
        jax.tree.structure(variables)
    )
    got = np.asarray(with_means.apply(variables, jnp.asarray(x)))
    assert got.shape == (3, 6 + 5)
    np.testing.assert_allclose(got[:, :6], np.asarray(plain.apply(variables, jnp.asarray(x))))
    np.testing.assert_allclose(got[:, 6:], x.astype(np.float64).mean(axis=(1, 2)), rtol=1e-5)
    # So the two constant plots GroupNorm cannot tell apart get different features.
    flat = np.ones((2, 8, 8, 5), np.float32) * np.array([0.2, 0.7], np.float32)[:, None, None, None]
    features = np.asarray(with_means.apply(variables, jnp.asarray(flat)))
    np.testing.assert_allclose(features[0, :6], features[1, :6], atol=1e-3)
    np.testing.assert_allclose(features[:, 6:], [[0.2] * 5, [0.7] * 5], rtol=1e-6)


def test_groups_are_the_largest_divisor_of_the_channels_within_the_cap():
    for channels in range(1, 97):
        for cap in range(1, 40):
            assert _groups(channels, cap) == num_groups(channels, cap), (channels, cap)


def test_a_bfloat16_model_runs_both_towers_and_heads_in_bfloat16():
    encoder = EncoderSpec(stage_sizes=(1,), widths=(8,), stem_width=8, norm_groups=4)
    spec = tiny_model_spec(
        encoder, rp_size=8, crop_size=8, head_hidden_dims=(16,), dtype="bfloat16"
    )
    params = perturbed(init_params(spec, 0))
    trained = params.variables["params"]
    for index, (tower, method) in enumerate((("rp", PIMC.encode_rp), ("image", PIMC.encode_image))):
        shape = (4, *spec.view_input_shape(spec.views[index]))
        x = jax.random.normal(jax.random.key(index), shape)
        features, embeddings = PIMC(spec).apply(params.variables, x, method=method)
        assert features.dtype == embeddings.dtype == jnp.float32
        by_dtype = {}
        for dtype in (jnp.bfloat16, jnp.float32):
            fields = dataclasses.asdict(getattr(spec, f"{tower}_encoder"))
            want = ResNetEncoder(**fields, dtype=dtype).apply(
                {"params": trained[f"{tower}_encoder"]}, x
            )
            head = ProjectionHead(spec.head_hidden_dims, spec.embedding_dim, dtype=dtype)
            by_dtype[dtype] = want, head.apply({"params": trained[f"{tower}_head"]}, want)
        np.testing.assert_array_equal(features, by_dtype[jnp.bfloat16][0])
        np.testing.assert_array_equal(embeddings, by_dtype[jnp.bfloat16][1])
        # The float32 path is told apart: bfloat16 rounding moves these well above 1e-3.
        assert np.abs(np.asarray(features - by_dtype[jnp.float32][0])).max() > 1e-3
        assert np.abs(np.asarray(embeddings - by_dtype[jnp.float32][1])).max() > 1e-3


def test_encoder_settings_it_cannot_run_raise_one_line_errors():
    x = jnp.zeros((1, 8, 8, 3))
    cases = [
        (dict(stage_sizes=(1, 1), widths=(8,)), {}, "stage_sizes (1, 1) and widths (8,) must "
         "have the same length"),
        (dict(padding="reflect"), {}, "padding must be one of ('same', 'valid'), got 'reflect'"),
        ({}, dict(pool=False), "pool=False is for the dense pass of towers with padding='same'"),
    ]  # fmt: skip
    for fields, kwargs, message in cases:
        encoder = ResNetEncoder(**{"stage_sizes": (1,), "widths": (8,), **fields})
        with pytest.raises(ValueError) as error:
            encoder.init(jax.random.key(0), x, **kwargs)
        assert str(error.value).split("\n")[0] == message
