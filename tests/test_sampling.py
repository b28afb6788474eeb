"""Pixel sampling, Hilbert order, crops, padding and pair batches against hand/NumPy references."""

import dataclasses

import numpy as np
import pytest

from pimc_jax.data.pairs import PairSampler
from pimc_jax.data.patches import Patch, shard_patches
from pimc_jax.data.pixels import hilbert_curve_order, sample_pixels
from pimc_jax.data.statistics import band_statistics
from pimc_jax.data.synthetic import make_patch, make_patches
from pimc_jax.data.views import (
    MEDIAN_COMPOSITE,
    choose_image_dates,
    clear_date_scores,
    extract_crops,
    median_composite,
    pad_series,
)
from pimc_jax.evaluation.pixels import pixel_dataset

BANDS = ("B2", "B3", "B4", "B8")


def _patch(num_dates=5, height=6, width=7, seed=0, labels=None, fold=0, patch_id="p"):
    rng = np.random.default_rng(seed)
    bands = rng.uniform(0.0, 0.3, (num_dates, height, width, len(BANDS))).astype(np.float32)
    dates = np.cumsum(rng.integers(1, 10, num_dates)).astype(np.int32) + 18000
    if labels is None:
        labels = rng.integers(0, 4, (height, width)).astype(np.int32)
    return Patch(bands, dates, BANDS, labels, patch_id, fold)


# Hilbert curve (x = column, y = row) of order 1 and 2, written out by hand.
HILBERT_2 = [(0, 0), (0, 1), (1, 1), (1, 0)]
HILBERT_4 = [
    (0, 0), (1, 0), (1, 1), (0, 1), (0, 2), (0, 3), (1, 3), (1, 2),
    (2, 2), (2, 3), (3, 3), (3, 2), (3, 1), (2, 1), (2, 0), (3, 0),
]  # fmt: skip


@pytest.mark.parametrize("side, curve", [(2, HILBERT_2), (4, HILBERT_4)])
def test_hilbert_order_matches_hand_computed_curve(side, curve):
    expected = [y * side + x for x, y in curve]
    np.testing.assert_array_equal(hilbert_curve_order(side, side), expected)


@pytest.mark.parametrize("height, width", [(8, 8), (16, 16), (5, 7), (1, 3), (13, 4)])
def test_hilbert_order_is_permutation(height, width):
    order = hilbert_curve_order(height, width)
    np.testing.assert_array_equal(np.sort(order), np.arange(height * width))
    if height == width and height & (height - 1) == 0:
        rows, cols = np.divmod(order, width)
        steps = np.abs(np.diff(rows)) + np.abs(np.diff(cols))
        np.testing.assert_array_equal(steps, 1)


def test_hilbert_order_non_power_of_two_keeps_the_square_curve_order():
    # Filtering the 8x8 curve to the 5x7 pixels keeps their relative order.
    square = hilbert_curve_order(8, 8)
    rows, cols = np.divmod(square, 8)
    inside = (rows < 5) & (cols < 7)
    np.testing.assert_array_equal(hilbert_curve_order(5, 7), rows[inside] * 7 + cols[inside])


def test_uniform_sampling_without_replacement():
    rng = np.random.default_rng(0)
    pixels = sample_pixels(rng, 6, 5, 30, "uniform")
    assert pixels.shape == (30, 2)
    assert len({tuple(p) for p in pixels}) == 30
    assert pixels[:, 0].max() < 6 and pixels[:, 1].max() < 5 and pixels.min() >= 0
    assert sample_pixels(rng, 2, 2, 9, "uniform").shape == (9, 2)


def test_hilbert_sampling_spreads_samples():
    rng = np.random.default_rng(1)
    pixels = sample_pixels(rng, 16, 16, 16, "hilbert")
    assert len({tuple(p) for p in pixels}) == 16
    # Evenly spaced curve positions: one sample in each 4x4 block of the 16x16 grid.
    blocks = {(r // 4, c // 4) for r, c in pixels}
    assert len(blocks) == 16
    order = hilbert_curve_order(16, 16)
    positions = np.argsort(order)[pixels[:, 0] * 16 + pixels[:, 1]]
    np.testing.assert_array_equal(np.diff(positions), 16)
    with pytest.raises(ValueError, match="sampling method"):
        sample_pixels(rng, 4, 4, 2, "random")


def _reference_crop(image, row, col, size):
    pad = size
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    top, left = row - size // 2 + pad, col - size // 2 + pad
    return padded[top : top + size, left : left + size]


@pytest.mark.parametrize("size", [1, 4, 5, 9])
def test_crops_match_numpy_reflect_padding(size):
    image = np.arange(6 * 7 * 2, dtype=np.float32).reshape(6, 7, 2)
    corners = np.array([[0, 0], [0, 6], [5, 0], [5, 6], [2, 3], [1, 5]])
    crops = extract_crops(image, corners, size)
    assert crops.shape == (len(corners), size, size, 2)
    for crop, (row, col) in zip(crops, corners, strict=True):
        np.testing.assert_array_equal(crop, _reference_crop(image, row, col, size))
        np.testing.assert_array_equal(crop[size // 2, size // 2], image[row, col])


def test_crops_larger_than_image_follow_numpy_reflect():
    image = np.arange(3 * 4 * 1, dtype=np.float32).reshape(3, 4, 1)
    crops = extract_crops(image, np.array([[1, 2], [0, 0]]), 11)
    for crop, (row, col) in zip(crops, [(1, 2), (0, 0)], strict=True):
        np.testing.assert_array_equal(crop, _reference_crop(image, row, col, 11))
    with pytest.raises(ValueError, match="inside"):
        extract_crops(image, np.array([[3, 0]]), 3)


def test_pad_series_pads_with_nan_repeats_last_date_and_masks():
    bands = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    out = pad_series(bands, np.array([10, 20, 35]), 5)
    assert out["bands"].shape == (2, 5, 2) and out["bands"].dtype == np.float32
    np.testing.assert_array_equal(out["bands"][:, :3], bands)
    assert np.isnan(out["bands"][:, 3:]).all()
    np.testing.assert_array_equal(out["dates"], [[10, 20, 35, 35, 35]] * 2)
    assert out["dates"].dtype == np.float32
    np.testing.assert_array_equal(out["mask"], [[True, True, True, False, False]] * 2)
    per_series = pad_series(bands, np.array([[1, 2, 3], [4, 5, 6]]), 4)
    np.testing.assert_array_equal(per_series["dates"], [[1, 2, 3, 3], [4, 5, 6, 6]])


def test_pad_series_subsamples_long_series_evenly():
    bands = np.arange(10, dtype=np.float32).reshape(1, 10, 1)
    out = pad_series(bands, np.arange(10) * 3, 4)
    # floor(linspace(0, 9, 4) + 0.5) = [0, 3, 6, 9]: first and last kept.
    np.testing.assert_array_equal(out["bands"][0, :, 0], [0, 3, 6, 9])
    np.testing.assert_array_equal(out["dates"][0], [0, 9, 18, 27])
    assert out["mask"].all()
    with pytest.raises(ValueError, match="dates"):
        pad_series(bands, np.arange(9), 4)


def test_clear_dates_prefer_low_blue():
    patch = _patch(num_dates=6)
    bands = patch.bands.copy()
    bands[[1, 4]] = 0.5  # clouds
    bands[2, :2] = np.nan  # partly missing
    cloudy = Patch(bands, patch.dates, BANDS, patch.labels)
    scores = clear_date_scores(cloudy)
    assert scores[1] > scores[0] and scores[4] > scores[5]
    dates = choose_image_dates(np.random.default_rng(0), cloudy, 200, "random_clear")
    assert set(np.unique(dates)) == {0, 3, 5}  # the clearest half of 6 dates
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(choose_image_dates(rng, cloudy, 3, "fixed_index", index=-1), 5)
    assert (choose_image_dates(rng, cloudy, 2, "median") == MEDIAN_COMPOSITE).all()
    with pytest.raises(ValueError, match="out of range"):
        choose_image_dates(rng, cloudy, 2, "fixed_index", index=6)


def test_median_composite_ignores_nan():
    bands = np.array([1.0, np.nan, 3.0, 10.0], dtype=np.float32).reshape(4, 1, 1, 1)
    np.testing.assert_array_equal(median_composite(bands)[0, 0], [3.0])
    assert np.isnan(median_composite(np.full((2, 1, 1, 1), np.nan)))[0, 0, 0]


def test_band_statistics():
    patches = [_patch(seed=s) for s in range(3)]
    bands = patches[0].bands.copy()
    bands[0, 0, 0, 2] = np.nan
    patches[0] = Patch(bands, patches[0].dates, BANDS, patches[0].labels)
    mean, std = band_statistics(patches, ("B4", "B2"))
    values = np.concatenate([p.bands[..., [2, 0]].reshape(-1, 2) for p in patches])
    np.testing.assert_allclose(mean, np.nanmean(values, axis=0), rtol=1e-5)
    np.testing.assert_allclose(std, np.nanstd(values, axis=0), rtol=1e-4)


def test_shard_patches_partitions():
    patches = [_patch(patch_id=str(i)) for i in range(7)]
    shards = [shard_patches(patches, i, 3) for i in range(3)]
    ids = sorted(p.patch_id for shard in shards for p in shard)
    assert ids == sorted(str(i) for i in range(7))
    assert [len(s) for s in shards] == [3, 2, 2]
    with pytest.raises(ValueError):
        shard_patches(patches, 3, 3)


@pytest.fixture(scope="module")
def synthetic():
    return make_patches(6, seed=2, size=16, min_dates=8, max_dates=12)


@pytest.mark.parametrize("image_date", ["random_clear", "median", "fixed_index"])
def test_pair_sampler_batch_contract(synthetic, image_date):
    sampler = PairSampler(
        synthetic,
        pixels_per_patch=4,
        crop_size=8,
        max_dates=14,
        sampling="hilbert",
        image_date=image_date,
        seed=0,
    )
    batch = sampler.sample_batch(10)
    assert set(batch) == {"bands", "dates", "mask", "image"}
    assert batch["bands"].shape == (10, 14, 10) and batch["bands"].dtype == np.float32
    assert batch["dates"].shape == (10, 14) and batch["dates"].dtype == np.float32
    assert batch["mask"].shape == (10, 14) and batch["mask"].dtype == np.bool_
    assert batch["image"].shape == (10, 8, 8, 3) and batch["image"].dtype == np.float32
    assert np.isfinite(batch["image"]).all()
    # Padding: NaN bands exactly where the mask is False (at the end), dates non-decreasing.
    assert np.isnan(batch["bands"][~batch["mask"]]).all()
    lengths = batch["mask"].sum(axis=1)
    np.testing.assert_array_equal(batch["mask"], np.arange(14) < lengths[:, None])
    assert set(lengths) <= {p.num_dates for p in synthetic}
    assert np.all(np.diff(batch["dates"], axis=1) >= 0)
    # Same generator state → same batch.
    again = sampler.sample_batch(10, np.random.default_rng(5))
    np.testing.assert_array_equal(
        again["image"], sampler.sample_batch(10, np.random.default_rng(5))["image"]
    )


def test_pair_sampler_views_match_the_patch():
    patch = _patch(num_dates=4, height=5, width=6)
    sampler = PairSampler(
        [patch],
        pixels_per_patch=30,
        crop_size=3,
        image_bands=("B4", "B3", "B2"),
        max_dates=6,
        image_date="fixed_index",
    )
    batch = sampler.sample_batch(30, np.random.default_rng(0))
    # Without statistics the crops stay reflectance: every series/crop is found in the patch.
    for series, image in zip(batch["bands"], batch["image"], strict=True):
        matches = np.argwhere(
            np.all(patch.bands.transpose(1, 2, 0, 3) == series[None, None, :4], axis=(2, 3))
        )
        assert len(matches) == 1
        row, col = matches[0]
        reference = _reference_crop(patch.bands[0][..., [2, 1, 0]], row, col, 3)
        np.testing.assert_array_equal(image, reference)
    # All 30 pixels of the 5x6 patch, each once.
    assert len({tuple(s[0]) for s in batch["bands"]}) == 30


def test_pixel_dataset_excludes_classes_and_reports_folds():
    labels = np.zeros((6, 7), dtype=np.int32)
    labels[:, 3:] = 2
    labels[0, :] = 5
    patches = [_patch(labels=labels, fold=f, seed=f) for f in (1, 2)]
    data = pixel_dataset(patches, pixels_per_patch=100, max_dates=8, seed=0, exclude_classes=(0,))
    assert set(np.unique(data["labels"])) == {2, 5}
    assert len(data["labels"]) == 2 * np.sum(labels != 0)
    assert data["labels"].dtype == np.int32
    assert data["bands"].shape == (len(data["labels"]), 8, len(BANDS))
    assert data["mask"][:, :5].all() and not data["mask"][:, 5:].any()
    eligible = np.sum(labels != 0)
    np.testing.assert_array_equal(np.bincount(data["fold"]), [0, eligible, eligible])
    few = pixel_dataset(patches, pixels_per_patch=3, max_dates=8, exclude_classes=(0, 5))
    assert len(few["labels"]) == 6 and (few["labels"] == 2).all()
    with pytest.raises(ValueError, match="no labels"):
        pixel_dataset(
            [Patch(patches[0].bands, patches[0].dates, BANDS)], pixels_per_patch=2, max_dates=8
        )


@pytest.mark.parametrize("image_date", ["random_clear", "median"])
def test_digital_number_patches_sample_like_reflectance(image_date):
    float_patch = make_patch(3, 0, size=16, min_dates=6, max_dates=8, nodata_probability=0.0)
    numbers = np.round(float_patch.bands * 10_000).astype(np.int16)
    dn_patch = dataclasses.replace(float_patch, bands=numbers, reflectance_scale=10_000.0)
    reference = dataclasses.replace(float_patch, bands=numbers / np.float32(10_000))
    kwargs = dict(pixels_per_patch=4, crop_size=5, max_dates=8, image_date=image_date)
    got = PairSampler([dn_patch], **kwargs).sample_batch(8, np.random.default_rng(0))
    want = PairSampler([reference], **kwargs).sample_batch(8, np.random.default_rng(0))
    for key in want:
        assert got[key].dtype == want[key].dtype
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, equal_nan=True)


def test_block_split_keeps_every_tile_in_one_split():
    """Pixels of a patch without folds are split by 16-px tiles: no tile in two splits,
    about 20 % / 20 % of the pixels in val / test. Reference worked out by hand: with the
    label of pixel (r, c) set to 4·(r // 16) + c // 16, a tile is exactly a label."""
    import ml_collections

    from pimc_jax.evaluation.pixels import block_split_rows

    rows, cols = np.indices((64, 64))
    labels = (4 * (rows // 16) + cols // 16).astype(np.int32)
    patch = _patch(height=64, width=64, labels=labels)
    data = pixel_dataset([patch], pixels_per_patch=64 * 64, max_dates=8, block_size=16)
    tiles = {int(b): set(data["labels"][data["block"] == b].tolist()) for b in data["block"]}
    assert len(tiles) == 16 and all(len(v) == 1 for v in tiles.values())  # tile = label
    config = ml_collections.ConfigDict(
        dict(eval_seed=0, val_fraction=0.2, test_fraction=0.2, block_size=16)
    )
    train, val, test = block_split_rows(data["block"], data["labels"], config)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(64 * 64))
    held = [set(data["labels"][part].tolist()) for part in (train, val, test)]
    assert not (held[0] & held[1]) and not (held[0] & held[2]) and not (held[1] & held[2])
    assert abs(val.size / 4096 - 0.2) <= 1 / 16 and abs(test.size / 4096 - 0.2) <= 1 / 16
