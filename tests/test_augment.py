"""Crop augmentations (pimc_jax.augment) against SciPy and NumPy, and the augmentation-only
pairing ("s2_image_aug", "s2_image") through the config checks, ``encode`` and the step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import ndimage
from tiny_configs import load_config, perturbed, strided_encoder, tiny_model_spec

from pimc_jax import augment, encode, encode_patch
from pimc_jax.config_checks import validate_pretrain_config as check_config
from pimc_jax.loss import symmetric_infonce
from pimc_jax.models import PIMC, init_params
from pimc_jax.preprocessing import normalize_crops
from pimc_jax.step import create_train_state, train_step


def _dihedral(crop: np.ndarray) -> list[np.ndarray]:
    """The 8 flips and rotations of a (k, k, C) crop."""
    turns = [np.rot90(crop, k, axes=(0, 1)) for k in range(4)]
    return turns + [np.rot90(crop[:, ::-1], k, axes=(0, 1)) for k in range(4)]


def test_flip_rotate_gives_a_dihedral_image_of_each_crop_by_global_row():
    crops = np.random.default_rng(0).normal(size=(8, 5, 5, 2)).astype(np.float32)
    key, rows = jax.random.key(3), jnp.arange(8)
    out = np.asarray(augment.flip_rotate(key, jnp.asarray(crops), rows))
    for crop, result in zip(crops, out, strict=True):
        assert any(np.array_equal(result, d) for d in _dihedral(crop))
        assert result[2, 2].tolist() == crop[2, 2].tolist()  # the centre stays the centre
    halves = [
        augment.flip_rotate(key, jnp.asarray(crops[i : i + 4]), rows[i : i + 4]) for i in (0, 4)
    ]
    np.testing.assert_array_equal(np.concatenate(halves), out)  # a split batch draws the same
    assert len({tuple(r.ravel()[:3]) for r in out}) > 1  # not one draw for every crop


def test_resized_crop_is_bilinear_at_half_pixel_centres():
    crop = np.random.default_rng(1).normal(size=(16, 16, 3)).astype(np.float32)
    side, top, left = 11.3, 2.4, 4.1
    out = np.asarray(augment.resized_crop(jnp.asarray(crop), side, top, left))
    positions = (np.arange(16) + 0.5) * side / 16 - 0.5
    rows, cols = np.meshgrid(top + positions, left + positions, indexing="ij")
    for c in range(3):
        expected = ndimage.map_coordinates(crop[..., c], [rows, cols], order=1, mode="nearest")
        np.testing.assert_allclose(out[..., c], expected, atol=1e-5)
    # The whole crop is itself.
    whole = augment.resized_crop(jnp.asarray(crop), 16.0, 0.0, 0.0)
    np.testing.assert_allclose(whole, crop, atol=1e-5)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 1.5])
def test_gaussian_blur_matches_scipy(sigma):
    crop = np.random.default_rng(2).normal(size=(9, 9, 2)).astype(np.float32)
    out = np.asarray(augment.gaussian_blur(jnp.asarray(crop), jnp.float32(sigma)))
    # SciPy's kernel radius is int(truncate · sigma + 0.5): truncate = radius / sigma.
    truncate = augment.BLUR_RADIUS / sigma
    expected = crop.astype(np.float64)
    for axis in (0, 1):
        expected = ndimage.gaussian_filter1d(
            expected, sigma, axis=axis, mode="nearest", truncate=truncate
        )
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_strong_augment_draws_per_row_and_changes_the_crop():
    crops = np.random.default_rng(3).normal(size=(6, 16, 16, 4)).astype(np.float32)
    key, rows = jax.random.key(5), jnp.arange(6)
    out = np.asarray(augment.strong_augment(key, jnp.asarray(crops), rows))
    assert out.shape == crops.shape and out.dtype == np.float32 and np.all(np.isfinite(out))
    # Not merely flipped or rotated: the resized crop resamples every crop.
    for crop, result in zip(crops, out, strict=True):
        assert not any(np.allclose(result, d, atol=1e-3) for d in _dihedral(crop))
    halves = [
        augment.strong_augment(key, jnp.asarray(crops[i : i + 3]), rows[i : i + 3]) for i in (0, 3)
    ]
    np.testing.assert_allclose(np.concatenate(halves), out, atol=1e-6)
    other = np.asarray(augment.strong_augment(jax.random.key(6), jnp.asarray(crops), rows))
    assert not np.allclose(other, out)
    # The same crop in two rows gets two different augmentations.
    same = augment.strong_augment(key, jnp.asarray(np.repeat(crops[:1], 2, 0)), jnp.arange(2))
    assert not np.allclose(same[0], same[1])


def test_augmentation_pairing_needs_augment_on():
    config = load_config("pretrain_augment:tiny")
    assert tuple(config.model.views) == ("s2_image_aug", "s2_image")
    check_config(config)
    config.augment = False
    with pytest.raises(ValueError, match="augment=True"):
        check_config(config)


def _augmentation_pairing():
    """A tiny random model of the ("s2_image_aug", "s2_image") pairing, 8 × 8 RGB crops."""
    spec = tiny_model_spec(
        strided_encoder((8, 16), 4),
        crop_size=8,
        embedding_dim=12,
        views=("s2_image_aug", "s2_image"),
    )
    return perturbed(init_params(spec, 0))


def test_encode_runs_both_towers_of_the_augmentation_pairing_unaugmented():
    params = _augmentation_pairing()
    spec = params.spec
    crops = np.random.default_rng(4).uniform(0.0, 0.4, (5, spec.crop_size, spec.crop_size, 3))
    crops = crops.astype(np.float32)
    out = encode(params, {"image": crops})
    x = normalize_crops(spec, jnp.asarray(crops))
    expected = PIMC(spec).apply(params.variables, x, x)
    np.testing.assert_allclose(out["rp"], expected["z_rp"], atol=1e-5)
    np.testing.assert_allclose(out["image"], expected["z_image"], atol=1e-5)


def test_encode_patch_of_the_augmentation_pairing_embeds_each_pixels_crop():
    params = _augmentation_pairing()
    rng = np.random.default_rng(5)
    bands = rng.uniform(0.0, 0.4, (3, 20, 20, 3)).astype(np.float32)
    out = encode_patch(params, bands, dates=[0, 10, 20], band_names=("B4", "B3", "B2"))
    centres = np.array([[4, 15], [10, 10], [15, 5]])
    crops = np.stack([np.median(bands, 0)[r - 4 : r + 4, c - 4 : c + 4] for r, c in centres])
    reference = encode(params, {"image": crops})
    for key in ("rp", "image"):
        np.testing.assert_allclose(
            out[key][centres[:, 0], centres[:, 1]], reference[key], atol=1e-5
        )
    with pytest.raises(ValueError, match="mode='exact'"):
        encode_patch(params, bands, dates=[0, 10, 20], band_names=("B4", "B3", "B2"), mode="fast")


def test_step_of_the_augmentation_pairing_strongly_augments_tower_1_and_flips_tower_2():
    """The step's loss equals the loss of the towers applied by hand to the normalised
    crops: tower 1 through :func:`augment.strong_augment` with a key of its own, tower 2
    through :func:`augment.flip_rotate` with the step's key (each crop by its row)."""
    params = _augmentation_pairing()
    spec = params.spec
    optimizer = optax.sgd(0.0)
    state = create_train_state(spec, optimizer, jax.random.key(0))
    state = state.replace(params=params.variables)
    crops = np.random.default_rng(8).uniform(0.0, 0.4, (6, spec.crop_size, spec.crop_size, 3))
    crops = jnp.asarray(crops, jnp.float32)
    key = jax.random.key(2)
    _, metrics = jax.jit(lambda s, b: train_step(s, b, key, spec=spec, optimizer=optimizer))(
        state, {"image": crops}
    )
    rng, rows = jax.random.fold_in(key, 0), jnp.arange(len(crops))
    x = normalize_crops(spec, crops)
    out = PIMC(spec).apply(
        params.variables,
        augment.strong_augment(jax.random.fold_in(rng, 1_000_003), x, rows),
        augment.flip_rotate(rng, x, rows),
    )
    expected, _ = symmetric_infonce(out["z_rp"], out["z_image"], out["temperature"])
    np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-5)
