"""``pimc_jax.encode`` values against an independent path: plots built with NumPy and pyts
from the given dates, the towers applied by hand (``tests/numpy_reference.py``) with a
pre-trained checkpoint's weights; and how moving the dates changes the embeddings."""

from __future__ import annotations

import numpy as np
import numpy_reference as ref
import pytest
from tiny_configs import load_config, perturbed

import pimc_jax
from pimc_jax import launcher

NAMES = pimc_jax.BAND_TABLES["pastis"]
TOL = dict(rtol=2e-4, atol=2e-5)


@pytest.fixture(scope="module", params=["default", "paper"])
def params(request, tmp_path_factory) -> pimc_jax.PIMCParams:
    """The weights of a short pre-training run of ``configs/pretrain.py:tiny`` (and of its
    ``paper`` variant), perturbed so that no residual branch is still near zero."""
    config = load_config("pretrain:tiny" if request.param == "default" else "pretrain:paper,tiny")
    config.total_steps = 4
    workdir = tmp_path_factory.mktemp(f"pretrained_{request.param}")
    launcher.run(config, str(workdir))
    return perturbed(pimc_jax.load_params(workdir), seed=11)


def _pixels(num: int, num_dates: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, T, 10)`` plausible reflectance with a seasonal NIR cycle, and ``(T,)``
    irregular, increasing whole days (gaps 2 to 60 days)."""
    rng = np.random.default_rng(seed)
    dates = np.cumsum(rng.integers(2, 61, num_dates)).astype(np.float32) + 100.0
    bands = rng.uniform(0.03, 0.25, (num, num_dates, len(NAMES)))
    phase = rng.uniform(0, 2 * np.pi, (num, 1))
    bands[..., NAMES.index("B8")] = 0.3 + 0.2 * np.sin(dates / 58.0 + phase)
    return bands.astype(np.float32), dates


def _reference(params, bands, dates, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Plot-tower features and embeddings of each pixel, all by hand."""
    spec = params.spec
    dates = np.broadcast_to(dates, bands.shape[:2])
    masks = np.ones(bands.shape[:2], bool) if mask is None else mask
    plots = np.stack(
        [ref.pixel_plots(b, d, NAMES, spec, m) for b, d, m in zip(bands, dates, masks, strict=True)]
    )
    p = params.variables["params"]
    features = ref.resnet(p["rp_encoder"], spec.rp_encoder, plots)
    return features, ref.head(p["rp_head"], features)


def _encode(params, bands, dates, **extra):
    return pimc_jax.encode(params, {"bands": bands, "dates": dates, "band_names": NAMES, **extra})


def test_series_embeddings_equal_the_hand_built_reference(params):
    bands, dates = _pixels(5, 11, seed=0)
    out = _encode(params, bands, dates)
    features, embeddings = _reference(params, bands, dates)
    np.testing.assert_allclose(out["rp_features"], features, **TOL)
    np.testing.assert_allclose(out["rp"], embeddings, **TOL)
    assert out["valid"].all()


def test_per_pixel_dates_and_masked_acquisitions_follow_the_reference(params):
    bands, shared = _pixels(4, 13, seed=1)
    dates = shared + np.arange(4, dtype=np.float32)[:, None] * np.float32(17.0)
    dates[2] = np.cumsum(np.random.default_rng(5).integers(1, 60, 13)).astype(np.float32)
    mask = np.ones((4, 13), bool)
    mask[0, 0] = mask[1, -2:] = mask[3, 4:7] = False  # a first, a last, a middle gap
    bands[1, -1] = np.nan  # hidden by the mask anyway
    out = _encode(params, bands, dates, mask=mask)
    features, embeddings = _reference(params, bands, dates, mask)
    np.testing.assert_allclose(out["rp_features"], features, **TOL)
    np.testing.assert_allclose(out["rp"], embeddings, **TOL)


def test_crop_embeddings_equal_the_hand_built_reference(params):
    spec = params.spec
    rng = np.random.default_rng(2)
    crops = rng.uniform(0.0, 0.4, (4, spec.crop_size, spec.crop_size, len(spec.image_bands)))
    crops = crops.astype(np.float32)
    out = pimc_jax.encode(params, {"image": crops})
    p = params.variables["params"]
    inputs = ref.standardized_crops(crops, spec.image_mean, spec.image_std)
    features = ref.resnet(p["image_encoder"], spec.image_encoder, inputs)
    np.testing.assert_allclose(out["image_features"], features, **TOL)
    np.testing.assert_allclose(out["image"], ref.head(p["image_head"], features), **TOL)


def test_shifting_or_stretching_all_dates_changes_nothing(params):
    # The plots see the series on a regular grid over the pixel's own dates: an affine
    # change of the calendar (another origin, a stretched time axis) leaves them as
    # they are.
    bands, dates = _pixels(3, 10, seed=3)
    base = _encode(params, bands, dates)["rp"]
    for moved in (dates + 365.0, dates * np.float32(7.0) - 40.0):
        np.testing.assert_allclose(_encode(params, bands, moved)["rp"], base, atol=2e-5)


def test_respacing_the_dates_changes_the_embedding_as_the_reference_does(params):
    bands, dates = _pixels(4, 10, seed=4)
    # The same acquisitions at other days: gaps shrink early in the year and grow later,
    # and the evenly spaced 0 … T−1 calendar.
    gaps = np.diff(dates, prepend=dates[0] - 10.0)
    respaced = np.cumsum(gaps[::-1]).astype(np.float32)
    even = np.arange(10, dtype=np.float32)
    base = _reference(params, bands, dates)[1]
    for new_dates in (respaced, even):
        _, want = _reference(params, bands, new_dates)
        # The reference itself says the change is far larger than the tolerance.
        assert np.abs(want - base).max() > 50 * TOL["atol"]
        np.testing.assert_allclose(_encode(params, bands, new_dates)["rp"], want, **TOL)


def test_reordering_the_observations_changes_the_embedding_as_the_reference_does(params):
    # The acquisitions in the opposite order at the same days (the season runs backwards),
    # and two neighbouring acquisitions swapped.
    bands, dates = _pixels(3, 9, seed=6)
    base = _reference(params, bands, dates)[1]
    swapped = bands.copy()
    swapped[:, [3, 4]] = bands[:, [4, 3]]
    for reordered in (bands[:, ::-1], swapped):
        _, want = _reference(params, reordered, dates)
        assert np.abs(want - base).max() > 50 * TOL["atol"]
        np.testing.assert_allclose(_encode(params, reordered, dates)["rp"], want, **TOL)
