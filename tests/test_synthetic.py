"""Synthetic PASTIS-like generator: determinism, shapes, dates, class phenology, and the
Sentinel-1 series (dates, vegetation signal, speckle statistics)."""

from collections import deque

import numpy as np
import pytest

from pimc_jax.data.classes import EUROSAT_CLASS_NAMES, SYNTHETIC_CLASS_NAMES
from pimc_jax.data.patches import Patch
from pimc_jax.data.synthetic import make_image_classification_set, make_patch, make_patches

PASTIS_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
YEAR_2019 = (
    int(np.datetime64("2019-01-01", "D").astype(np.int64)),
    int(np.datetime64("2019-12-31", "D").astype(np.int64)),
)


@pytest.fixture(scope="module")
def patches():
    return make_patches(24, seed=3, size=32, min_dates=20, max_dates=40)


def _ndvi(patch: Patch) -> np.ndarray:
    nir = patch.bands[..., patch.band_names.index("B8")].astype(np.float64)
    red = patch.bands[..., patch.band_names.index("B4")].astype(np.float64)
    return (nir - red) / (nir + red)


def test_same_seed_same_arrays_and_different_seed_differs():
    a, b = make_patch(7, 2), make_patch(7, 2)
    np.testing.assert_array_equal(a.bands, b.bands)
    np.testing.assert_array_equal(a.dates, b.dates)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.patch_id == b.patch_id
    other = make_patch(8, 2)
    assert other.bands.shape != a.bands.shape or not np.array_equal(
        np.nan_to_num(other.bands), np.nan_to_num(a.bands)
    )
    assert not np.array_equal(make_patch(7, 3).labels, a.labels)


def test_patch_does_not_depend_on_how_many_are_made():
    few, many = make_patches(2, seed=5), make_patches(4, seed=5)
    np.testing.assert_array_equal(few[1].bands, many[1].bands)


def test_shapes_dtypes_and_ranges(patches):
    for patch in patches:
        t, h, w, c = patch.bands.shape
        assert (h, w, c) == (32, 32, len(PASTIS_BANDS))
        assert 20 <= t <= 40
        assert patch.band_names == PASTIS_BANDS
        assert patch.bands.dtype == np.float32
        assert patch.dates.dtype == np.int32
        assert patch.labels.dtype == np.int32 and patch.labels.shape == (32, 32)
        assert patch.labels.min() >= 0 and patch.labels.max() < len(SYNTHETIC_CLASS_NAMES)
        finite = patch.bands[np.isfinite(patch.bands)]
        assert finite.min() >= 0.0 and finite.max() <= 1.0


def test_dates_strictly_increasing_within_2019_and_variable_length(patches):
    for patch in patches:
        assert np.all(np.diff(patch.dates) > 0)
        assert YEAR_2019[0] <= patch.dates.min() and patch.dates.max() <= YEAR_2019[1]
    assert len({patch.num_dates for patch in patches}) > 3


def test_band_names_choose_the_spectra():
    rgb = make_patch(0, 0, band_names=("B4", "B3", "B2"))
    full = make_patch(0, 0)
    assert rgb.bands.shape[-1] == 3
    # Same scene, clouds and no-data: the RGB patch is the B4, B3, B2 slice of the full
    # one up to the independent per-band noise (std 0.01).
    sliced = full.bands[..., [2, 1, 0]]
    np.testing.assert_array_equal(np.isnan(rgb.bands), np.isnan(sliced))
    difference = np.abs(np.nan_to_num(rgb.bands - sliced))
    assert difference.mean() < 0.02 and difference.max() < 0.1
    with pytest.raises(ValueError, match="XYZ"):
        make_patch(0, 0, band_names=("B4", "XYZ"))


def test_num_classes_limits_labels():
    labels = np.concatenate([p.labels.ravel() for p in make_patches(6, num_classes=3)])
    assert set(np.unique(labels)) <= {0, 1, 2}
    with pytest.raises(ValueError, match="num_classes"):
        make_patch(0, 0, num_classes=len(SYNTHETIC_CLASS_NAMES) + 1)


def test_clouds_and_nodata_present_but_rare(patches):
    blue = np.concatenate([p.bands[..., 0].ravel() for p in patches])
    finite = blue[np.isfinite(blue)]
    cloudy = np.mean(finite > 0.3)  # clear-sky blue reflectance stays below ~0.2
    assert 0.01 < cloudy < 0.3
    nan_fraction = np.mean(~np.isfinite(blue))
    assert nan_fraction < 0.05
    assert any(np.isnan(p.bands).any() for p in make_patches(40, seed=1))


def _class_ndvi_by_month(patches) -> np.ndarray:
    """Median NDVI per (class, month) over clear pixels (blue < 0.2), NumPy only."""
    values = [[[] for _ in range(12)] for _ in SYNTHETIC_CLASS_NAMES]
    for patch in patches:
        ndvi = _ndvi(patch)
        clear = patch.bands[..., 0] < 0.2
        months = (patch.dates - YEAR_2019[0]) * 12 // 365
        for t, month in enumerate(months):
            for label in np.unique(patch.labels):
                pixels = (patch.labels == label) & clear[t]
                values[label][month].extend(ndvi[t][pixels].tolist())
    return np.array([[np.median(v) if v else np.nan for v in row] for row in values])


def test_ndvi_from_bands_separates_the_classes():
    curves = _class_ndvi_by_month(make_patches(40, seed=11, min_dates=30, max_dates=40))
    classes = {name: curves[i] for i, name in enumerate(SYNTHETIC_CLASS_NAMES)}
    peak = np.nanmax(curves, axis=1)
    # Background is the lowest class at its peak; crops reach dense-canopy NDVI.
    assert np.argmin(peak) == SYNTHETIC_CLASS_NAMES.index("background")
    assert peak[SYNTHETIC_CLASS_NAMES.index("background")] < 0.35
    for crop in ("wheat", "maize", "rapeseed", "sunflower", "soybean", "grassland"):
        assert np.nanmax(classes[crop]) > 0.5, crop
    # Wheat peaks in spring (Apr-May), maize in summer (Jul-Sep).
    assert np.nanargmax(classes["wheat"]) in (3, 4, 5)
    assert np.nanargmax(classes["maize"]) in (6, 7, 8)
    assert np.nanmean(classes["wheat"][3:5]) - np.nanmean(classes["maize"][3:5]) > 0.2
    assert np.nanmean(classes["maize"][7:9]) - np.nanmean(classes["wheat"][7:9]) > 0.2
    # Grassland stays green in winter, maize does not.
    assert classes["grassland"][0] - classes["maize"][0] > 0.2
    # Every pair of classes differs somewhere in the year (maize and soybean least).
    for i in range(len(SYNTHETIC_CLASS_NAMES)):
        for j in range(i + 1, len(SYNTHETIC_CLASS_NAMES)):
            assert np.nanmax(np.abs(curves[i] - curves[j])) > 0.05, (i, j)


def test_single_date_crop_carries_class_information(patches):
    # Class-mean texture (spatial std of NIR within 3x3 windows) differs between classes.
    spread = {c: [] for c in range(len(SYNTHETIC_CLASS_NAMES))}
    for patch in patches:
        nir = patch.bands[0, ..., patch.band_names.index("B8")]
        windows = np.lib.stride_tricks.sliding_window_view(nir, (3, 3))
        local_std = windows.std(axis=(-1, -2))
        labels = patch.labels[1:-1, 1:-1]
        for c in np.unique(labels):
            spread[c].extend(local_std[labels == c].tolist())
    means = {c: np.nanmean(v) for c, v in spread.items() if v}
    background = means.pop(0)
    assert background > max(means.values())


def test_folds_round_robin():
    folds = [p.fold for p in make_patches(12, seed=0, folds=5, size=16)]
    assert folds == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]
    assert {p.fold for p in make_patches(3, size=16)} == {0}


def test_image_classification_set():
    images, labels, names = make_image_classification_set(30, seed=1, size=32)
    assert images.shape == (30, 32, 32, 13) and images.dtype == np.float32
    assert labels.shape == (30,) and labels.dtype == np.int32
    assert names == EUROSAT_CLASS_NAMES
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 3))
    assert images.min() >= 0.0 and images.max() <= 1.0
    again, labels_again, _ = make_image_classification_set(30, seed=1, size=32)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels_again)
    assert not np.array_equal(make_image_classification_set(30, seed=2, size=32)[0], images)
    # EuroSAT band order (B8A last): NDVI of forest scenes beats that of lakes (a leaf-off
    # deciduous forest in winter can fall below 0.5).
    nir, red = images[..., 7].astype(np.float64), images[..., 3].astype(np.float64)
    scene_ndvi = ((nir - red) / np.maximum(nir + red, 1e-6)).mean(axis=(1, 2))
    forest = scene_ndvi[labels == EUROSAT_CLASS_NAMES.index("Forest")]
    lake = scene_ndvi[labels == EUROSAT_CLASS_NAMES.index("SeaLake")]
    assert np.median(forest) > 0.5 and forest.min() > lake.max() + 0.3
    rgb, _, _ = make_image_classification_set(4, seed=1, size=16, band_names=("B4", "B3", "B2"))
    assert rgb.shape == (4, 16, 16, 3)


def test_image_classification_set_is_not_separable_by_mean_spectrum():
    # Season, soil, illumination, haze and noise make the classes' spectra overlap: a
    # nearest-centroid classifier on the scene-mean spectrum beats chance (0.1) but is far
    # from perfect.
    images, labels, _ = make_image_classification_set(600, seed=3, size=16)
    spectra = images.mean(axis=(1, 2)).astype(np.float64)
    train, test = slice(0, 300), slice(300, None)
    centroids = np.stack([spectra[train][labels[train] == k].mean(axis=0) for k in range(10)])
    distance = ((spectra[test][:, None] - centroids[None]) ** 2).sum(axis=-1)
    accuracy = np.mean(np.argmin(distance, axis=1) == labels[test])
    assert 0.2 < accuracy < 0.6


# Sentinel-1 series of the synthetic patches.


def _parcels(inside: np.ndarray) -> list[np.ndarray]:
    """Masks of the 4-connected regions of ``inside`` (breadth-first flood fill)."""
    seen = np.zeros(inside.shape, bool)
    regions = []
    for start in zip(*np.nonzero(inside), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        region, queue = np.zeros(inside.shape, bool), deque([start])
        while queue:
            row, col = queue.popleft()
            region[row, col] = True
            for r, c in ((row + 1, col), (row - 1, col), (row, col + 1), (row, col - 1)):
                if 0 <= r < inside.shape[0] and 0 <= c < inside.shape[1]:
                    if inside[r, c] and not seen[r, c]:
                        seen[r, c] = True
                        queue.append((r, c))
        regions.append(region)
    return regions


def test_s1_off_by_default_and_s2_side_unchanged():
    plain, radar = make_patch(7, 2), make_patch(7, 2, s1=True)
    assert plain.s1_bands is None and plain.s1_dates is None and not plain.has_s1
    np.testing.assert_array_equal(radar.bands, plain.bands)
    np.testing.assert_array_equal(radar.dates, plain.dates)
    np.testing.assert_array_equal(radar.labels, plain.labels)
    again = make_patch(7, 2, s1=True)
    np.testing.assert_array_equal(radar.s1_bands, again.s1_bands)
    np.testing.assert_array_equal(radar.s1_dates, again.s1_dates)
    assert not np.array_equal(make_patch(8, 2, s1=True).s1_bands[:3], radar.s1_bands[:3])
    with pytest.raises(ValueError, match="s1_looks"):
        make_patch(0, 0, s1=True, s1_looks=0)


def test_s1_shapes_and_irregular_dates_within_the_s2_period():
    patches = make_patches(6, seed=5, size=16, s1=True)
    gaps = set()
    for patch in patches:
        t1, h, w, c = patch.s1_bands.shape
        assert (h, w, c) == (16, 16, 3) and t1 >= 10 and patch.has_s1
        assert patch.s1_band_names == ("VV", "VH", "VV/VH")
        assert patch.s1_bands.dtype == np.float32 and patch.s1_dates.dtype == np.int32
        # Clouds do not reach the radar: no gap, plausible C-band backscatter in dB.
        assert np.all(np.isfinite(patch.s1_bands))
        vv, vh, ratio = np.moveaxis(patch.s1_bands.astype(np.float64), -1, 0)
        assert -35 < np.median(vh) < np.median(vv) < -3
        np.testing.assert_allclose(ratio, vv - vh, atol=1e-4)
        assert patch.dates[0] <= patch.s1_dates[0] and patch.s1_dates[-1] <= patch.dates[-1]
        steps = np.diff(patch.s1_dates)
        assert np.all(steps >= 6) and np.all(steps % 6 == 0)
        gaps.update(steps.tolist())
        # Own dates: not the Sentinel-2 ones.
        assert len(np.intersect1d(patch.s1_dates, patch.dates)) < len(patch.s1_dates) / 2
    assert {6, 12} <= gaps  # irregular revisit


def test_s1_vh_follows_the_parcels_ndvi():
    # Per patch and class, the median VH (linear power) at each S1 date against the
    # median NDVI of the clear S2 observations, interpolated to that date.
    ndvi_values, vh_values = [], []
    for patch in make_patches(8, seed=4, size=32, s1=True):
        ndvi = _ndvi(patch)
        clear = patch.bands[..., 0] < 0.2
        vh = 10.0 ** (patch.s1_bands[..., 1].astype(np.float64) / 10.0)
        for label in np.unique(patch.labels[patch.labels > 0]):
            pixels = patch.labels == label
            per_date = [
                np.median(ndvi[t][pixels & clear[t]]) if np.sum(pixels & clear[t]) > 5 else np.nan
                for t in range(patch.num_dates)
            ]
            per_date = np.array(per_date)
            seen = np.isfinite(per_date)
            if pixels.sum() < 10 or seen.sum() < 3:
                continue
            ndvi_values += np.interp(patch.s1_dates, patch.dates[seen], per_date[seen]).tolist()
            vh_values += [np.median(vh[t][pixels]) for t in range(len(patch.s1_dates))]
    assert len(vh_values) > 200
    assert np.corrcoef(ndvi_values, vh_values)[0, 1] > 0.5


@pytest.mark.parametrize("looks", [1.0, 5.0])
def test_s1_speckle_mean_over_std_is_sqrt_looks(looks):
    # Over a parcel (a 4-connected region between field margins) at one date the
    # backscatter is nearly uniform, so mean / std of the linear intensity is that of
    # gamma speckle of L looks: sqrt(L).
    ratios = []
    for patch in make_patches(3, seed=2, size=48, s1=True, s1_looks=looks):
        linear = 10.0 ** (patch.s1_bands[..., :2].astype(np.float64) / 10.0)
        for region in _parcels(patch.labels != 0):
            if region.sum() >= 40:
                values = linear[:, region]  # (T1, pixels, 2)
                ratios += (values.mean(axis=1) / values.std(axis=1)).ravel().tolist()
    assert len(ratios) > 500
    assert np.median(ratios) == pytest.approx(np.sqrt(looks), rel=0.05)
