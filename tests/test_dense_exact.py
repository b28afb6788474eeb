"""Towers without padding inside the crop: their dense pass equals the per-crop pass.

Reference: the per-crop tower through :func:`pimc_jax.encode` on every pixel's
reflect-padded crop of the median composite (what pre-training feeds the tower); the
dense pass (:func:`pimc_jax.encode_patch`, the module's ``dense_crop`` mode) must match
it to max |Δ| ≤ 1e-4, on a real patch and on synthetic ones, for strided towers too.
"""

import dataclasses
import importlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_configs import perturbed, tiny_model_spec

import pimc_jax
from pimc_jax import valid_tower
from pimc_jax.data.synthetic import make_patch
from pimc_jax.data.user import load_patch_folder
from pimc_jax.data.views import extract_crops, median_composite
from pimc_jax.models import PIMC, TOWERS, EncoderSpec, ModelSpec, ProjectionHead, ResNetEncoder

encode_lib = importlib.import_module("pimc_jax.encode")
REAL = Path(__file__).resolve().parents[2] / "shared/data/real/belgium_monthly_patches"
TOL = 1e-4

TINY = EncoderSpec(stage_sizes=(1,), widths=(8,), stem_width=8, norm_groups=4, padding="valid")
# The default towers' layout (16/32 channels, a stride-2 block) with 17-pixel crops, which
# its receptive field covers exactly.
DEFAULT_LAYOUT = EncoderSpec(
    stage_sizes=(1, 1), widths=(16, 32), stem_width=16, norm_groups=8, padding="valid"
)


def _per_crop(params, patch):
    """Image embeddings and features of every pixel's crop, one crop at a time in spirit:
    the crops cut by hand from the patch's median composite, through ``encode``."""
    spec = params.spec
    bands = patch.reflectance()
    channels = [
        [pimc_jax.indices.canonical_band_name(n) for n in patch.band_names].index(
            pimc_jax.indices.canonical_band_name(b)
        )
        for b in spec.image_bands
    ]
    composite = median_composite(bands[..., channels])
    height, width = composite.shape[:2]
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    centers = np.stack([rows.ravel(), cols.ravel()], axis=1)
    crops = extract_crops(composite, centers, spec.crop_size)
    return pimc_jax.encode(params, {"image": crops}, progress=False)


def _check_dense_equals_per_crop(params, patch, **kwargs):
    dense = pimc_jax.encode_patch(params, patch, progress=False, **kwargs)
    want = _per_crop(params, patch)
    pixels = patch.bands.shape[1] * patch.bands.shape[2]
    for key in ("image", "image_features"):
        got = dense[key].reshape(pixels, -1)
        assert got.shape == want[key].shape, key
        assert np.max(np.abs(got - want[key])) <= TOL, key
    np.testing.assert_array_equal(dense["image_valid"].reshape(-1), want["image_valid"])
    return dense


@pytest.mark.skipif(not REAL.is_dir(), reason="real patches not present")
def test_dense_equals_per_crop_on_a_real_patch():
    patch = min(load_patch_folder(REAL, progress=False), key=lambda p: p.bands[0].size)
    spec = tiny_model_spec(TINY, crop_size=8, rp_size=8)
    params = perturbed(pimc_jax.init_params(spec, 0))
    _check_dense_equals_per_crop(params, patch)


@pytest.mark.parametrize(
    "encoder, crop",
    [
        (DEFAULT_LAYOUT, 17),
        pytest.param(
            dataclasses.replace(DEFAULT_LAYOUT, norm_groups=0, input_means=True),
            16,
            marks=pytest.mark.slow,
        ),
        # ImageNet stem (5×5 stride 2, 3×3 stride-2 max-pool) and a stride-2 block.
        (
            dataclasses.replace(
                TINY,
                stage_sizes=(1, 1),
                widths=(8, 8),
                stem_kernel=5,
                stem_stride=2,
                stem_pool=True,
            ),
            49,
        ),  # fmt: skip
    ],
)
def test_dense_equals_per_crop_on_a_synthetic_patch(encoder, crop):
    spec = tiny_model_spec(TINY, image_encoder=encoder, crop_size=crop, rp_size=8)
    params = perturbed(pimc_jax.init_params(spec, 0))
    patch = make_patch(3, 0, size=14)
    dense = _check_dense_equals_per_crop(params, patch, chunk_pixels=70)  # tiles of 5 rows
    # The mode does not matter for such a tower: both are the exact dense pass.
    fast = pimc_jax.encode_patch(params, patch, progress=False, mode="fast")
    np.testing.assert_allclose(fast["image"], dense["image"], atol=2e-6)


def test_an_empty_raster_gives_every_output_with_no_rows():
    spec = tiny_model_spec(TINY, image_encoder=DEFAULT_LAYOUT, crop_size=17, rp_size=8)
    params = perturbed(pimc_jax.init_params(spec, 0))
    patch = make_patch(3, 0, size=14)
    args = (patch.dates, patch.band_names)
    full = pimc_jax.encode_patch(params, patch.bands[:, :2], *args, progress=False)
    empty = pimc_jax.encode_patch(params, patch.bands[:, :0], *args, progress=False)
    assert set(empty) == set(full) == {"rp", "rp_features", "valid", "image", "image_features",
                                       "image_valid"}  # fmt: skip
    for key, value in full.items():
        assert empty[key].shape == (0, *value.shape[1:]) and empty[key].dtype == value.dtype


def test_module_dense_mode_uses_the_same_parameters():
    module = ResNetEncoder(**dataclasses.asdict(DEFAULT_LAYOUT))
    variables = module.init(jax.random.key(0), jnp.zeros((1, 17, 17, 3)))
    raster = jax.random.normal(jax.random.key(1), (1, 30, 30, 3))
    dense = module.apply(variables, raster, dense_crop=17)  # no new parameters needed
    assert dense.shape == (1, 30, 30, 32)
    # A pixel whose crop lies inside the raster: its crop through the per-crop call.
    crop = raster[:, 12 - 8 : 12 + 9, 15 - 8 : 15 + 9]
    np.testing.assert_allclose(dense[0, 12, 15], module.apply(variables, crop)[0], atol=TOL)


def test_encode_dense_runs_the_named_tower_and_its_head():
    spec = tiny_model_spec(DEFAULT_LAYOUT, crop_size=17, rp_size=17)
    params = perturbed(pimc_jax.init_params(spec, 0))
    trained = params.variables["params"]
    head = ProjectionHead(hidden_dims=spec.head_hidden_dims, output_dim=spec.embedding_dim)
    module = ResNetEncoder(**dataclasses.asdict(DEFAULT_LAYOUT))
    for index, tower in enumerate(TOWERS):
        channels = spec.view_input_shape(spec.views[index])[-1]
        raster = jax.random.normal(jax.random.key(index), (1, 20, 21, channels))
        args = (params.variables, raster) + ((tower,) if tower == "rp" else ())
        features, embeddings = PIMC(spec).apply(*args, method=PIMC.encode_dense)
        want = module.apply({"params": trained[f"{tower}_encoder"]}, raster, dense_crop=17)
        np.testing.assert_allclose(features, want, atol=1e-6)
        flat = head.apply({"params": trained[f"{tower}_head"]}, want.reshape(-1, 32))
        np.testing.assert_allclose(embeddings, flat.reshape(1, 20, 21, -1), atol=1e-6)
    with pytest.raises(ValueError, match=r"^tower must be one of \('rp', 'image'\), got 'RP'"):
        PIMC(spec).apply(params.variables, raster, "RP", method=PIMC.encode_dense)


def test_default_layout_covers_a_17_pixel_crop():
    assert valid_tower.coverage(DEFAULT_LAYOUT, 17) == (0, 16)
    assert valid_tower.coverage(DEFAULT_LAYOUT, 16) == (0, 14)  # one pixel unseen


def test_dense_image_features_runs_the_module_for_valid_towers():
    spec = tiny_model_spec(TINY, image_encoder=DEFAULT_LAYOUT, crop_size=17, rp_size=8)
    params = perturbed(pimc_jax.init_params(spec, 0))
    image = jax.random.normal(jax.random.key(2), (24, 24, 3))
    got = encode_lib.dense_image_features(spec, params.variables, image)
    module = ResNetEncoder(**dataclasses.asdict(DEFAULT_LAYOUT))
    variables = {"params": params.variables["params"]["image_encoder"]}
    want = module.apply(variables, image[None], dense_crop=17)[0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert encode_lib.dense_margin(spec) == 8
    with pytest.raises(ValueError, match="pool=False"):
        encode_lib.dense_image_features(spec, params.variables, image, pool=False)


def test_specs_refuse_what_a_valid_tower_cannot_run():
    with pytest.raises(ValueError, match="padding must be one of"):
        EncoderSpec(padding="reflect")
    with pytest.raises(ValueError, match="needs at least 13x13"):
        ModelSpec(image_encoder=DEFAULT_LAYOUT, crop_size=12)
    with pytest.raises(ValueError, match="odd stem_kernel"):
        ModelSpec(image_encoder=dataclasses.replace(DEFAULT_LAYOUT, stem_kernel=4))
    with pytest.raises(ValueError, match="pool=False is for the dense pass"):
        module = ResNetEncoder(stage_sizes=(1,), widths=(8,), stem_width=8, norm_groups=4)
        variables = module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
        module.apply(variables, jnp.zeros((1, 8, 8, 3)), pool=False)


def test_same_towers_keep_their_parameter_names():
    # What checkpoints of the default towers hold, unchanged by the padding option.
    spec = ModelSpec()
    assert spec.image_encoder.padding == "same"
    names = set(pimc_jax.init_params(spec, 0).variables["params"]["image_encoder"])
    assert names == {"Conv_0", "GroupNorm_0", "ResidualBlock_0", "ResidualBlock_1"}
    valid = dataclasses.replace(spec, image_encoder=DEFAULT_LAYOUT, crop_size=17)
    names = set(pimc_jax.init_params(valid, 0).variables["params"]["image_encoder"])
    assert names == {"Conv_0", "LayerNorm_0", "ResidualBlock_0", "ResidualBlock_1"}
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    legacy = spec.to_dict()
    del legacy["image_encoder"]["padding"]  # a checkpoint written before the field
    assert ModelSpec.from_dict(legacy) == spec


def test_one_principal_components_fit_serves_maps_and_figures():
    from pimc_jax.figures import arrays
    from pimc_jax.pca import fit_principal

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    fit = arrays.principal_components(x, 3)
    assert arrays.principal_components is fit_principal
    # Components: the covariance's top eigenvectors (up to sign), float64; shares sum ≤ 1.
    values, vectors = np.linalg.eigh(np.cov(x.T))
    for j in range(3):
        assert abs(abs(fit.components[j] @ vectors[:, -1 - j]) - 1) < 1e-8
    np.testing.assert_allclose(fit.explained, values[::-1][:3] / values.sum(), rtol=1e-8)
    scores = encode_lib.principal_components(x.astype(np.float32), 3)
    np.testing.assert_allclose(scores, fit.projections, rtol=1e-4, atol=1e-4)
    # Fewer vectors than components: zeros for the figures, further axes for maps.
    assert not fit_principal(x[:1], 3).components.any()
    completed = fit_principal(x[:1], 3, complete=True).components
    np.testing.assert_allclose(completed @ completed.T, np.eye(3), atol=1e-12)
