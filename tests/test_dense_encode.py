"""Dense encoding: block-wise equals one pass, repeated inputs, the fast mode, GroupNorm."""

import dataclasses
import importlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_configs import perturbed, strided_encoder, tiny_model_spec

import pimc_jax
import pimc_jax.models
from pimc_jax import windowed
from pimc_jax.data.synthetic import make_patch
from pimc_jax.data.views import extract_crops, median_composite
from pimc_jax.models import EncoderSpec, GroupNorm, ModelSpec

encode_lib = importlib.import_module("pimc_jax.encode")


def _cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sum(x * y, 1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))


@pytest.fixture(scope="module")
def params(tiny_params):
    return perturbed(tiny_params)


@pytest.fixture(scope="module")
def patch():
    return make_patch(3, 0, size=20)


def test_blocks_of_rows_equal_one_pass(params, patch, monkeypatch):
    whole = pimc_jax.encode_patch(params, patch, progress=False)
    # 45 pixels per block: 2 rows of 20 at a time, 10 blocks, the last one full.
    calls = []
    original = encode_lib.encode
    monkeypatch.setattr(encode_lib, "encode", lambda *a, **k: calls.append(1) or original(*a, **k))
    blocks = encode_lib.encode_patch(params, patch, progress=False, chunk_pixels=45)
    assert len(calls) == 10
    assert whole.keys() == blocks.keys()
    for key, value in whole.items():
        assert blocks[key].shape == value.shape and blocks[key].dtype == value.dtype
        np.testing.assert_allclose(blocks[key], value, atol=2e-6, err_msg=key)


def test_blocks_use_the_whole_raster_for_crops_and_composite(params, patch):
    # Reference built by hand from the definition: the crop of each pixel from the median
    # composite of the whole patch, the series as they are.
    got = encode_lib.encode_patch(params, patch, progress=False, chunk_pixels=20 * 3)
    spec = params.spec
    bands = patch.reflectance()
    channels = [patch.band_names.index(b) for b in spec.image_bands]
    composite = median_composite(bands[..., channels])
    rows, cols = np.meshgrid(np.arange(20), np.arange(20), indexing="ij")
    centers = np.stack([rows.ravel(), cols.ravel()], axis=1)
    crops = extract_crops(composite, centers, spec.crop_size)
    series = bands.transpose(1, 2, 0, 3).reshape(400, patch.num_dates, -1)
    want = pimc_jax.encode(
        params,
        {"bands": series, "dates": patch.dates, "band_names": patch.band_names, "image": crops},
        scale=1.0,
    )
    np.testing.assert_allclose(got["image"].reshape(400, -1), want["image"], atol=2e-6)
    np.testing.assert_allclose(got["rp"].reshape(400, -1), want["rp"], atol=2e-6)


def test_repeated_rows_are_embedded_once_with_the_same_result(params, patch):
    bands = patch.reflectance()[:, :4, :4].transpose(1, 2, 0, 3).reshape(16, patch.num_dates, -1)
    repeated = np.concatenate([bands, bands[::-1], bands[:3]])
    unique, inverse = encode_lib._unique_rows([repeated])
    assert unique[0].shape[0] == 16 and np.array_equal(unique[0][inverse], repeated)
    batch = {"dates": patch.dates, "band_names": patch.band_names}
    out = pimc_jax.encode(params, {**batch, "bands": repeated})
    # Each row alone: no batching, no de-duplication.
    for row in (0, 5, 17, 34):
        alone = pimc_jax.encode(params, {**batch, "bands": repeated[row : row + 1]})
        np.testing.assert_allclose(out["rp"][row], alone["rp"][0], atol=2e-6)


def test_no_data_pixels_get_one_embedding(params, patch):
    bands = patch.reflectance().copy()
    bands[:, :10] = np.nan  # the top half without any data
    out = encode_lib.encode_patch(params, bands, patch.dates, patch.band_names, scale=1.0)
    assert not out["valid"][:10].any() and out["valid"][10:].all()
    assert np.all(out["rp"][:10] == out["rp"][0, 0])


def test_fast_mode_agrees_with_exact(patch):
    # The default image tower (16-pixel crops, 16/32 channels, GroupNorm 8), random weights.
    spec = ModelSpec(
        rp_encoder=EncoderSpec(stage_sizes=(1,), widths=(8,), stem_width=8, norm_groups=4),
        rp_size=8,
    )
    params = perturbed(pimc_jax.init_params(spec, 0))
    exact = encode_lib.encode_patch(params, patch, progress=False)
    fast = encode_lib.encode_patch(params, patch, progress=False, mode="fast")
    np.testing.assert_array_equal(fast["rp"], exact["rp"])
    x, y = exact["image"].reshape(400, -1), fast["image"].reshape(400, -1)
    x, y = x - x.mean(0), y - y.mean(0)  # what sets pixels apart: a random model gives
    # every pixel nearly the same embedding (raw cosine 0.99 between any two pixels)
    centred = _cosine(x, y)
    # The documented tolerance (pimc_jax.encode): centred cosine about 0.7 for random
    # weights (GroupNorm statistics of each position's own window, real neighbours
    # instead of zero padding), far above that of another pixel's embedding.
    assert centred.mean() > 0.55
    assert centred.mean() > _cosine(x, np.roll(y, 37, axis=0)).mean() + 0.4


def test_fast_mode_blocks_equal_one_pass(params, patch):
    whole = encode_lib.encode_patch(params, patch, progress=False, mode="fast")
    blocks = encode_lib.encode_patch(params, patch, progress=False, mode="fast", chunk_pixels=45)
    np.testing.assert_allclose(blocks["image"], whole["image"], atol=2e-6)


def test_dense_features_keep_each_pixels_sampling_grid():
    # An 8-pixel crop after one stride-2 layer: 4 positions 2 apart, the first 4 pixels
    # before the centre. Pixel q pools rows (and columns) q - 4, q - 2, q, q + 2.
    grid = windowed.Grid.of_crop(8).window(3, 2)
    x = jnp.zeros((1, 16, 16, 1)).at[0, 5, 5, 0].set(1.0)
    pooled = grid.mean(x)[0, :, :, 0]
    # So pixel 5 is pooled by pixels 3, 5, 7 and 9.
    hit = np.argwhere(np.asarray(pooled) > 0)
    assert {tuple(h) for h in hit} == {(r, c) for r in (3, 5, 7, 9) for c in (3, 5, 7, 9)}
    np.testing.assert_allclose(np.asarray(pooled)[hit[:, 0], hit[:, 1]], 1 / 16)


@pytest.mark.slow
def test_fast_mode_of_a_deeper_tower_tracks_each_pixel():
    # A strided tower (ImageNet stem, a stride-2 block) on 16×16 crops standardised with the
    # composite's statistics, as training standardises them. Embeddings of different pixels
    # are close to one another (a wrong pixel's cosine is high too), so the fast mode's
    # error is measured against wrong-pixel baselines: each pixel's fast features must be
    # nearer its exact features than the fast features of other pixels are.
    patch = make_patch(1, 0, size=16)
    channels = [patch.band_names.index(b) for b in ("B4", "B3", "B2")]
    composite = median_composite(patch.reflectance()[..., channels])
    spec = tiny_model_spec(
        strided_encoder((4, 8), norm_groups=2),
        head_hidden_dims=(8,),
        embedding_dim=4,
        rp_size=8,
        crop_size=16,
        image_mean=tuple(float(v) for v in np.nanmean(composite, axis=(0, 1))),
        image_std=tuple(float(v) for v in np.nanstd(composite, axis=(0, 1))),
    )
    params = perturbed(pimc_jax.init_params(spec, 0))
    exact = encode_lib.encode_patch(params, patch, progress=False)
    fast = encode_lib.encode_patch(params, patch, progress=False, mode="fast")
    assert fast["image"].shape == exact["image"].shape == (16, 16, 4)
    x = exact["image_features"].reshape(256, -1)
    y = fast["image_features"].reshape(256, -1)
    error = np.linalg.norm(x - y, axis=1).mean()
    # Shifted by one pixel, one row, a diagonal step and half the patch.
    wrong = [np.linalg.norm(x - np.roll(y, k, axis=0), axis=1).mean() for k in (1, 16, 17, 128)]
    assert error < 0.9 * min(wrong), (error, wrong)
    # Rank of each pixel's own fast features among all 256 by distance to its exact ones:
    # chance would put the median near 128.
    distances = np.sum((x[:, None] - y[None]) ** 2, axis=-1)
    ranks = np.sum(distances < np.diag(distances)[:, None], axis=1)
    assert np.median(ranks) < 64, np.median(ranks)


def test_series_bands_are_read_by_name(params, patch):
    want = pimc_jax.encode_patch(params, patch, progress=False)
    reversed_bands = patch.bands[..., ::-1]
    names = tuple(reversed(patch.band_names))
    got = pimc_jax.encode_patch(params, reversed_bands, patch.dates, names, progress=False)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-6, err_msg=key)


def test_bad_settings_raise_one_line_errors_naming_them(params, patch):
    arrays = (patch.bands, patch.dates, patch.band_names)
    modes = encode_lib.ENCODE_MODES
    cases = [
        ((patch,), dict(dates=patch.dates, nodata=0), "encode_patch with a Patch takes no "
         "['dates', 'nodata']: the patch has them"),
        ((patch,), dict(band_names="pastis"), "encode_patch with a Patch takes no "
         "['band_names']: the patch has them"),
        ((patch,), dict(mode="approximate"), f"mode must be one of {modes}, got 'approximate'"),
        ((patch,), dict(chunk_pixels=0), "chunk_pixels must be a positive integer, got 0"),
        ((patch,), dict(chunk_pixels=True), "chunk_pixels must be a positive integer, got True"),
        ((patch,), dict(chunk_pixels=2.5), "chunk_pixels must be a positive integer, got 2.5"),
        ((patch.bands,), {}, "encode_patch needs dates ((T,) days or ISO strings) for the bands"),
        ((patch.bands[0], *arrays[1:]), {}, f"bands must be (T, H, W, C), got shape "
         f"{patch.bands[0].shape}"),
        ((patch.bands[..., :3], *arrays[1:]), {}, f"bands has 3 channels but band_names has "
         f"{len(patch.band_names)}"),
    ]  # fmt: skip
    for args, kwargs, message in cases:
        with pytest.raises(ValueError) as error:
            encode_lib.encode_patch(params, *args, progress=False, **kwargs)
        assert str(error.value) == message
    names = list(patch.band_names)
    names[names.index("B4")] = "B1"  # the red band the image view reads, renamed away
    with pytest.raises(ValueError) as error:
        encode_lib.encode_patch(params, patch.bands, patch.dates, names, progress=False)
    assert str(error.value).startswith("image band 'B4' is not among the patch bands ")


@pytest.mark.parametrize(
    "shape, groups, offset",
    [((3, 24, 24, 16), 8, 0.0), ((2, 8, 8, 32), 16, 0.0), ((2, 12, 12, 8), 4, 5.0)],
)
def test_groupnorm_equals_flax(shape, groups, offset):
    x = jax.random.normal(jax.random.key(0), shape) * 2.0 + offset
    ours, theirs = GroupNorm(num_groups=groups), nn.GroupNorm(num_groups=groups)
    variables = theirs.init(jax.random.key(1), x)
    variables = jax.tree.map(
        lambda v: v + 0.3 * jax.random.normal(jax.random.key(2), v.shape), variables
    )
    assert jax.tree.structure(ours.init(jax.random.key(1), x)) == jax.tree.structure(variables)
    # Both take the variance as E[x²] − E[x]²; only the order of summation differs.
    np.testing.assert_allclose(
        ours.apply(variables, x), theirs.apply(variables, x), atol=1e-5, rtol=1e-5
    )
    loss = lambda module: lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))
    got = jax.grad(loss(ours), argnums=(0, 1))(variables, x)
    want = jax.grad(loss(theirs), argnums=(0, 1))(variables, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5 * max(1.0, float(jnp.abs(b).max())))


@pytest.mark.parametrize("crop, center", [(8, (6, 9)), (9, (10, 4)), (16, (8, 8))])
def test_windowed_groupnorm_is_each_crops_own(crop, center):
    # With a window, each position is normalised by the statistics of the crop centred
    # on it: at a crop's centre, Flax's GroupNorm of that crop (cut out of the map).
    x = jax.random.normal(jax.random.key(3), (1, 20, 18, 8)) * 1.5 + 0.7
    variables = nn.GroupNorm(num_groups=4).init(jax.random.key(1), x)
    variables = jax.tree.map(lambda v: v + jax.random.normal(jax.random.key(4), v.shape), variables)
    dense = GroupNorm(num_groups=4).apply(variables, x, windowed.Grid.of_crop(crop))
    top, left = center[0] - crop // 2, center[1] - crop // 2
    cut = x[:, top : top + crop, left : left + crop]
    want = nn.GroupNorm(num_groups=4).apply(variables, cut)[0, crop // 2, crop // 2]
    np.testing.assert_allclose(dense[0, center[0], center[1]], want, atol=2e-5)
    # A position whose crop differs gets other statistics.
    assert np.abs(dense[0, center[0], center[1]] - dense[0, 0, 0]).max() > 1e-2


@pytest.mark.parametrize("center", [(20, 20), (21, 20), (20, 23), (19, 19)])
def test_dense_map_is_the_crops_own_without_groupnorm(center):
    # Without GroupNorm the fast mode's only difference is the crop's zero padding, which
    # does not reach the crop's centre: there the dense map is exactly the crop's
    # activation, for every parity of row and column (strided layers keep the grid).
    encoder = EncoderSpec(stage_sizes=(1, 1), widths=(8, 16), stem_width=8, norm_groups=0)
    spec = ModelSpec(
        rp_encoder=encoder,
        image_encoder=encoder,
        crop_size=16,
        image_bands=("B4", "B3"),
        image_mean=(0.0, 0.0),
        image_std=(1.0, 1.0),
    )
    variables = perturbed(pimc_jax.init_params(spec, 0)).variables
    image = np.random.default_rng(0).normal(size=(40, 40, 2)).astype(np.float32)
    dense = encode_lib.dense_image_features(spec, variables, jnp.asarray(image), pool=False)
    crop = extract_crops(image, np.array([center]), 16)
    _, state = pimc_jax.models.PIMC(spec).apply(
        variables, crop, method=pimc_jax.models.PIMC.encode_image, capture_intermediates=True
    )
    last = state["intermediates"]["image_encoder"]["ResidualBlock_1"]["__call__"][0]
    # The 16-pixel crop's 8 x 8 stage-2 grid starts 8 pixels before the centre: index 4.
    np.testing.assert_allclose(dense[center], last[0, 4, 4], atol=1e-5)


def test_dense_input_means_are_each_crops_band_means():
    # With input_means the image features end in the crop's band means; dense encoding
    # gives each pixel those of the crop centred on it (reflect padding as crops do).
    encoder = EncoderSpec(stage_sizes=(1,), widths=(8,), stem_width=8, norm_groups=4)
    spec = ModelSpec(
        rp_encoder=encoder,
        image_encoder=dataclasses.replace(encoder, input_means=True),
        crop_size=8,
        image_bands=("B4", "B3"),
        image_mean=(0.0, 0.0),
        image_std=(1.0, 1.0),
    )
    assert spec.feature_dim("image") == 8 + 2 and spec.feature_dim("rp") == 8
    variables = perturbed(pimc_jax.init_params(spec, 0)).variables
    image = np.random.default_rng(2).normal(size=(20, 20, 2)).astype(np.float32)
    dense = np.asarray(encode_lib.dense_image_features(spec, variables, jnp.asarray(image)))
    assert dense.shape == (20, 20, 10)
    for center in [(10, 10), (11, 7), (4, 15)]:
        crop = extract_crops(image, np.array([center]), 8)
        np.testing.assert_allclose(dense[center][8:], crop[0].mean(axis=(0, 1)), rtol=1e-5)
        features, _ = pimc_jax.models.PIMC(spec).apply(
            variables, crop, method=pimc_jax.models.PIMC.encode_image
        )
        np.testing.assert_allclose(features[0, 8:], dense[center][8:], rtol=1e-5)


def test_dense_stem_norm_takes_statistics_of_each_crops_window():
    # Rows whose level and spread change by orders of magnitude down the raster: a norm
    # over each position's crop window keeps the dense features near the per-crop ones
    # (relative error 0.13–0.25 at these pixels); statistics of the whole raster would
    # put them 0.3–0.8 away.
    encoder = pimc_jax.models.ResNetEncoder(
        stage_sizes=(), widths=(), stem_width=8, stem_kernel=1, norm_groups=4
    )
    rows = jnp.arange(31)[:, None, None] - 15
    noise = jax.random.normal(jax.random.key(3), (1, 31, 31, 3))
    raster = noise * jnp.exp(rows / 5) + rows / 3
    variables = encoder.init(jax.random.key(0), raster[:, :9, :9])
    dense = encoder.apply(variables, raster, dense_crop=9)
    errors = []
    for row, col in ((4, 7), (15, 15), (26, 20), (8, 25), (22, 4)):
        want = encoder.apply(variables, raster[:, row - 4 : row + 5, col - 4 : col + 5])[0]
        errors.append(float(jnp.linalg.norm(dense[0, row, col] - want) / jnp.linalg.norm(want)))
    assert max(errors) < 0.3, errors
