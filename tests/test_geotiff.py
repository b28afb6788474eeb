"""Cloud masks (``valid``, SCL) in user data, GeoTIFF patch folders in, GeoTIFF results out.

References: the digital numbers, SCL classes, dates and georeference the fixture writers
stored, turned into expected reflectance with NumPy (``np.isin`` on the SCL classes the
README lists); files written by the library read back with rasterio directly; principal
components against an eigen-decomposition of the covariance matrix.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from format_writers import (
    UTM31N,
    write_geotiff_patch_folder,
    write_user_npz,
    write_user_patch_folder,
)
from tiny_configs import ROOT, one_cpu_env

import pimc_jax
from pimc_jax import progress as progress_lib
from pimc_jax.data import load_patches
from pimc_jax.data.geotiff import read_raster, write_geotiff, write_patch_geotiff
from pimc_jax.data.patches import Patch
from pimc_jax.data.user import (
    DEFAULT_SCL_INVALID_CLASSES,
    load_patch_folder,
    load_pixel_npz,
    observation_gaps,
    patch_sources,
)
from pimc_jax.defaults import data_config
from pimc_jax.encode import encode_patch, encode_patches, principal_components

# The README's default: no data, saturated, cloud shadow, cloud medium/high, cirrus.
README_SCL_GAPS = (0, 1, 3, 8, 9, 10)


def _edit_npz(path: Path, **changes) -> None:
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays.update(changes)
    np.savez(path, **arrays)


def _expected_reflectance(written: dict, classes=README_SCL_GAPS) -> np.ndarray:
    """(T, H, W, C) reflectance the loader must give: DN × 1e-4, NaN at the file's nodata
    (per band) and at every band of observations whose SCL class is in ``classes``."""
    expected = written["dn"].astype(np.float32) * np.float32(1e-4)
    expected[written["dn"] == -9999] = np.nan
    if written["scl"] is not None:
        expected[np.isin(written["scl"], classes)] = np.nan
    return expected


# --------------------------------------------------------------------------------------
# Masks in the .npz formats.


def test_default_classes_are_the_documented_ones():
    assert DEFAULT_SCL_INVALID_CLASSES == README_SCL_GAPS
    assert tuple(data_config().scl_invalid_classes) == README_SCL_GAPS
    assert 11 not in DEFAULT_SCL_INVALID_CLASSES  # snow is kept


def test_patch_npz_scl_makes_exactly_the_listed_classes_gaps(tmp_path):
    written = write_user_patch_folder(tmp_path, num_patches=1, size=8, with_labels=False)
    reflectance = written["patch_0"]["reflectance"]  # (4, 8, 8, 4)
    # Every class 0..11 at a known place of date 0 and 2 (by hand), vegetation elsewhere.
    scl = np.full((4, 8, 8), 4, np.uint8)
    scl[0, 0, :8] = np.arange(8)
    scl[2, 5, :4] = [8, 9, 10, 11]
    _edit_npz(tmp_path / "patch_0.npz", scl=scl)
    (patch,) = load_patch_folder(tmp_path)
    gap_places = [(0, 0, 0), (0, 0, 1), (0, 0, 3), (2, 5, 0), (2, 5, 1), (2, 5, 2)]
    expected = reflectance.copy()
    for place in gap_places:
        expected[place] = np.nan
    np.testing.assert_array_equal(patch.bands, expected)
    assert np.isnan(patch.bands).any(axis=-1).sum() == len(gap_places)

    # Snow (11) becomes a gap only when asked for; () masks nothing.
    (snowy,) = load_patch_folder(tmp_path, scl_invalid_classes=(*README_SCL_GAPS, 11))
    assert np.isnan(snowy.bands[2, 5, 3]).all()
    (unmasked,) = load_patch_folder(tmp_path, scl_invalid_classes=())
    np.testing.assert_array_equal(unmasked.bands, reflectance)


def test_patch_npz_valid_mask(tmp_path):
    written = write_user_patch_folder(tmp_path, num_patches=1, size=8, layout="TCHW")
    reflectance = written["patch_0"]["reflectance"]
    rng = np.random.default_rng(3)
    valid = rng.random((4, 8, 8)) > 0.3
    _edit_npz(tmp_path / "patch_0.npz", valid=valid)
    (patch,) = load_patch_folder(tmp_path)
    expected = np.where(valid[..., None], reflectance, np.nan)
    np.testing.assert_array_equal(patch.bands, expected)

    _edit_npz(tmp_path / "patch_0.npz", valid=np.ones((4, 8, 8), bool))
    (patch,) = load_patch_folder(tmp_path)
    np.testing.assert_array_equal(patch.bands, reflectance)  # all valid: nothing changes


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"valid": np.ones((4, 8, 7), bool)}, r"valid must be bool with shape \(4, 8, 8\)"),
        ({"valid": np.ones((4, 8, 8), np.int8)}, r"valid must be bool"),
        ({"scl": np.ones((8, 8), np.uint8)}, r"scl must be integer SCL classes .*\(4, 8, 8\)"),
        ({"scl": np.ones((4, 8, 8), np.float32)}, r"scl must be integer SCL classes"),
        ({"scl": np.full((4, 8, 8), 12, np.uint8)}, r"scl value 12 is not an SCL class"),
    ],
)
def test_patch_npz_bad_mask_is_a_one_line_error(tmp_path, changes, message):
    write_user_patch_folder(tmp_path, num_patches=1, size=8)
    _edit_npz(tmp_path / "patch_0.npz", **changes)
    with pytest.raises(ValueError, match=message) as error:
        load_patch_folder(tmp_path)
    assert "patch_0.npz" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("bad", [(0, 12), (-1,), ("cloud",), (3, 3), (True,)])
def test_bad_scl_class_setting(tmp_path, bad):
    write_user_patch_folder(tmp_path, num_patches=1, size=8)
    with pytest.raises(ValueError, match=r"scl_invalid_classes must be distinct SCL classes"):
        load_patch_folder(tmp_path, scl_invalid_classes=bad)


def test_pixel_npz_valid_and_scl(tmp_path):
    path = tmp_path / "pixels.npz"
    written = write_user_npz(path, num_pixels=6, num_dates=5, lengths=[5, 5, 4, 5, 3, 5])
    scl = np.full((6, 5), 5, np.uint8)
    scl[1, 2], scl[3, 0], scl[4, 1], scl[5, 4] = 9, 11, 3, 2  # gap, snow kept, gap, kept
    valid = np.ones((6, 5), bool)
    valid[0, 3] = False
    _edit_npz(path, scl=scl, valid=valid)
    series = load_pixel_npz(path)
    expected = np.where(series.mask[..., None], written["bands_reflectance"], np.nan)
    for pixel, date in [(1, 2), (4, 1), (0, 3)]:
        expected[pixel, date] = np.nan
    np.testing.assert_array_equal(series.bands, expected)
    np.testing.assert_array_equal(series.mask.sum(1), [5, 5, 4, 5, 3, 5])  # padding unchanged

    _edit_npz(path, scl=scl[:, :4])
    with pytest.raises(ValueError, match=r"pixels\.npz: scl must be .* shape \(6, 5\)"):
        load_pixel_npz(path)


def test_observation_gaps_combines_mask_and_scl():
    valid = np.array([[True, False, True, True]])
    scl = np.array([[4, 4, 8, 11]], np.uint8)
    gaps = observation_gaps((1, 4), valid=valid, scl=scl)
    np.testing.assert_array_equal(gaps, [[False, True, True, False]])
    assert observation_gaps((1, 4)) is None


# --------------------------------------------------------------------------------------
# GeoTIFF patch folders.


@pytest.mark.parametrize(
    ("layout", "scl", "descriptions"),
    [
        ("dates", "band", True),
        ("dates", "file", True),
        ("dates", "band", False),
        ("stack", "band", True),
        ("stack", "band", False),
        ("stack", None, True),
    ],
)
def test_geotiff_folder_reads_bands_masks_dates_georeference(tmp_path, layout, scl, descriptions):
    written = write_geotiff_patch_folder(
        tmp_path, layout=layout, scl=scl, descriptions=descriptions
    )
    patches = load_patch_folder(tmp_path)
    assert [p.patch_id for p in patches] == ["geo_0", "geo_1"]
    for patch in patches:
        reference = written[patch.patch_id]
        np.testing.assert_array_equal(patch.bands, _expected_reflectance(reference))
        np.testing.assert_array_equal(patch.dates, reference["days"])
        assert patch.band_names == ("B2", "B3", "B4", "B8")
        assert patch.crs == UTM31N
        assert patch.transform == reference["transform"]
        assert patch.labels is None
    # The file's nodata in one band only leaves the other bands of that observation.
    assert np.isnan(patches[0].bands[1, 3, 4, 3])
    if scl is None or written["geo_0"]["scl"][1, 3, 4] not in README_SCL_GAPS:
        assert np.isfinite(patches[0].bands[1, 3, 4, :3]).all()


def test_geotiff_folder_labels_and_config_setting(tmp_path):
    written = write_geotiff_patch_folder(tmp_path, num_patches=1)
    labels = np.arange(16 * 12).reshape(16, 12) % 7
    with rasterio.open(tmp_path / "geo_0" / f"{written['geo_0']['iso'][0]}.tif") as src:
        profile = src.profile
    profile.update(count=1, dtype="uint8", nodata=None)
    with rasterio.open(tmp_path / "geo_0" / "labels.tif", "w", **profile) as dst:
        dst.write(labels[None].astype(np.uint8))
    config = data_config()
    config.name, config.path = "patches", str(tmp_path)
    config.scl_invalid_classes = (9,)  # only high-probability clouds
    (patch,) = load_patches(config)
    np.testing.assert_array_equal(patch.labels, labels)
    np.testing.assert_array_equal(patch.bands, _expected_reflectance(written["geo_0"], (9,)))


def _retransform(path: Path, transform: Affine) -> None:
    with rasterio.open(path, "r+") as dst:
        dst.transform = transform


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("shift", r"{second}\.tif: CRS/transform .* differ"),
        ("rename", r"clouds\.tif: GeoTIFFs of a patch folder are named <YYYY-MM-DD>\.tif"),
        ("orphan_scl", r"2020-01-01_SCL\.tif: SCL file without a band file"),
        ("band_names", r"geo_0: unknown band names \['B99'\]"),
    ],
)
def test_geotiff_folder_errors_name_the_file(tmp_path, edit, message):
    written = write_geotiff_patch_folder(tmp_path, num_patches=1, scl="file")
    first, second = written["geo_0"]["iso"][:2]
    folder = tmp_path / "geo_0"
    if edit == "shift":
        _retransform(folder / f"{second}.tif", Affine(10.0, 0, 600_010.0, 0, -10.0, 5_700_000.0))
    elif edit == "rename":
        (folder / f"{first}.tif").rename(folder / "clouds.tif")
    elif edit == "orphan_scl":
        (folder / f"{first}_SCL.tif").rename(folder / "2020-01-01_SCL.tif")
    elif edit == "band_names":
        for file in folder.glob("????-??-??.tif"):
            with rasterio.open(file, "r+") as dst:
                dst.set_band_description(4, "B99")
    with pytest.raises(ValueError, match=message.format(second=second)) as error:
        load_patch_folder(tmp_path)
    assert "\n" not in str(error.value)


def test_geotiff_stack_without_dates_is_refused(tmp_path):
    write_geotiff_patch_folder(tmp_path, num_patches=1, layout="stack", descriptions=False)
    (tmp_path / "geo_0.dates.txt").unlink()
    with pytest.raises(ValueError, match=r"geo_0\.tif: no dates: describe every band"):
        load_patch_folder(tmp_path)
    (tmp_path / "geo_0.dates.txt").write_text("2019-04-01\n2019-04-11\n")
    with pytest.raises(ValueError, match=r"25 bands, but 2 dates in geo_0\.dates\.txt"):
        load_patch_folder(tmp_path)


# --------------------------------------------------------------------------------------
# GeoTIFF output.


def test_write_geotiff_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    transform = (10.0, 0.0, 431_000.0, 0.0, -10.0, 4_810_000.0)
    floats = rng.normal(size=(7, 5, 3)).astype(np.float32)
    floats[2, 3, 1] = np.nan
    path = write_geotiff(
        tmp_path / "f.tif", floats, "EPSG:32631", transform, band_names=["PC1", "PC2", "PC3"]
    )
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32631
        assert tuple(src.transform)[:6] == transform
        assert (src.height, src.width, src.count) == (7, 5, 3)
        assert src.descriptions == ("PC1", "PC2", "PC3")
        assert math.isnan(src.nodata)
        np.testing.assert_array_equal(np.moveaxis(src.read(), 0, -1), floats)

    classes = rng.integers(0, 9, size=(7, 5)).astype(np.int16)
    write_geotiff(tmp_path / "c.tif", classes, "EPSG:2154", Affine(*transform), nodata=-1)
    with rasterio.open(tmp_path / "c.tif") as src:
        assert src.crs.to_epsg() == 2154 and src.nodata == -1 and src.dtypes == ("int16",)
        np.testing.assert_array_equal(src.read(1), classes)

    write_geotiff(tmp_path / "n.tif", floats[..., 0], UTM31N, transform, nodata=-9999.0)
    with rasterio.open(tmp_path / "n.tif") as src:
        assert src.read(1)[2, 3] != -9999.0  # NaN only in band 1
        expected = np.where(np.isnan(floats[..., 0]), -9999.0, floats[..., 0])
        np.testing.assert_array_equal(src.read(1), expected)

    write_geotiff(tmp_path / "b.tif", classes > 4, UTM31N, transform)
    assert read_raster(tmp_path / "b.tif").values.dtype == np.uint8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((2, 2, 2, 2)), UTM31N, (1, 0, 0, 0, -1, 0)), r"\(H, W\) or \(H, W, C\)"),
        ((np.zeros((2, 2)), "EPSG:0", (1, 0, 0, 0, -1, 0)), r"crs 'EPSG:0' is not a CRS"),
        ((np.zeros((2, 2)), UTM31N, (1, 0, 0)), r"transform must be .* 6 finite numbers"),
        ((np.zeros((2, 2)), UTM31N, (0, 0, 0, 0, 0, 0)), r"degenerate"),
        ((np.array([["a"]]), UTM31N, (1, 0, 0, 0, -1, 0)), r"dtype <U1 cannot be written"),
    ],
)
def test_write_geotiff_errors(tmp_path, args, message):
    with pytest.raises(ValueError, match=message) as error:
        write_geotiff(tmp_path / "x.tif", *args)
    assert "\n" not in str(error.value)


def test_write_patch_geotiff_needs_georeference_and_shape(tmp_path):
    patch = Patch(np.zeros((2, 4, 3, 1), np.float32), np.array([1, 2]), ("B4",), patch_id="p")
    with pytest.raises(ValueError, match=r"patch 'p' has no georeference"):
        write_patch_geotiff(tmp_path / "x.tif", np.zeros((4, 3)), patch)
    located = Patch(
        patch.bands, patch.dates, ("B4",), patch_id="p", crs=UTM31N, transform=(10, 0, 0, 0, -10, 0)
    )
    with pytest.raises(ValueError, match=r"\(H, W\) = \(4, 3\) of patch 'p', got shape \(3, 4\)"):
        write_patch_geotiff(tmp_path / "x.tif", np.zeros((3, 4)), located)


def test_npz_patch_keeps_georeference(tmp_path):
    write_user_patch_folder(tmp_path, num_patches=1, size=8)
    transform = np.array([20.0, 0.0, 500_000.0, 0.0, -20.0, 6_000_000.0])
    _edit_npz(tmp_path / "patch_0.npz", crs=np.array("EPSG:32630"), transform=transform)
    (patch,) = load_patch_folder(tmp_path)
    assert patch.crs == "EPSG:32630" and patch.transform == tuple(transform)
    _edit_npz(tmp_path / "patch_0.npz", transform=transform[:5])
    with pytest.raises(ValueError, match=r"patch_0\.npz: transform must be 6 finite numbers"):
        load_patch_folder(tmp_path)


def test_principal_components_match_covariance_eigenvectors():
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(9, 7, 5)) @ np.diag([5.0, 3.0, 2.0, 1.0, 0.5])
    valid = rng.random((9, 7)) > 0.2
    got = principal_components(embeddings.astype(np.float32), 3, valid=valid)
    assert got.shape == (9, 7, 3) and got.dtype == np.float32
    assert np.isnan(got[~valid]).all() and np.isfinite(got[valid]).all()
    rows = embeddings[valid]
    mean = rows.mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(rows, rowvar=False))
    axes = eigenvectors[:, ::-1][:, :3]  # decreasing variance
    axes *= np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(3)])
    expected = (embeddings - mean) @ axes
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"k must be an integer in 1\.\.5"):
        principal_components(embeddings, 6)
    with pytest.raises(ValueError, match=r"valid must be bool with shape \(9, 7\)"):
        principal_components(embeddings, 2, valid=valid.T)


def test_encode_patch_takes_a_patch(tiny_params, tmp_path):
    names = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")  # the model's
    written = write_geotiff_patch_folder(tmp_path, 2, height=9, width=8, band_names=names)
    patches = load_patch_folder(tmp_path)
    got = encode_patch(tiny_params, patches[0])
    raw = written["geo_0"]
    reference = encode_patch(
        tiny_params,
        np.where(np.isin(raw["scl"], README_SCL_GAPS)[..., None], -9999, raw["dn"]),
        raw["iso"],
        list(names),
        scale=1e-4,
        nodata=-9999,
    )
    assert set(got) == set(reference)
    for key in got:
        np.testing.assert_allclose(got[key], reference[key], rtol=1e-5, atol=1e-6)
    streamed = list(encode_patches(tiny_params, patches, progress=False))
    assert [patch.patch_id for patch, _ in streamed] == ["geo_0", "geo_1"]
    np.testing.assert_array_equal(streamed[0][1]["rp"], got["rp"])
    with pytest.raises(ValueError, match=r"takes no \['scale'\]"):
        encode_patch(tiny_params, patches[0], scale=1e-4)


# --------------------------------------------------------------------------------------
# Progress bars.


def test_progress_is_silent_off_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv(progress_lib.ENV_VAR, raising=False)
    items = [1, 2, 3]
    assert progress_lib.progress(items, desc="work") is items  # pytest's stderr is no TTY
    monkeypatch.setenv(progress_lib.ENV_VAR, "1")
    assert list(progress_lib.progress(items, desc="forced")) == items
    assert "forced" in capsys.readouterr().err
    monkeypatch.setenv(progress_lib.ENV_VAR, "0")
    assert progress_lib.progress(items, enabled=None) is items
    assert list(progress_lib.progress(items, desc="asked", enabled=True)) == items
    assert "asked" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# End to end: pre-train from the command line on a GeoTIFF folder, encode, write, reopen.


def test_geotiff_folder_pretrains_from_the_cli_and_embeddings_round_trip(tmp_path):
    data = tmp_path / "tifs"
    written = write_geotiff_patch_folder(data, num_patches=2, layout="dates", scl="band")
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        "launch.py",
        "--config=configs/pretrain.py:tiny",
        "--config.data.name=patches",
        f"--config.data.path={data}",
        "--config.total_steps=2",
        "--config.global_batch_size=16",
        f"--workdir={workdir}",
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=one_cpu_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in metrics)

    params = pimc_jax.load_params(workdir)
    assert tuple(params.spec.band_names) == ("B2", "B3", "B4", "B8")  # from the descriptions
    patch = load_patch_folder(data)[1]
    out = encode_patch(params, patch)
    embedding_dim = params.spec.embedding_dim
    assert out["rp"].shape == (16, 12, embedding_dim)
    write_patch_geotiff(tmp_path / "rp.tif", out["rp"], patch)
    pcs = principal_components(out["rp"], 3, valid=out["valid"])
    write_patch_geotiff(tmp_path / "pca.tif", pcs, patch, band_names=["PC1", "PC2", "PC3"])
    write_patch_geotiff(tmp_path / "valid.tif", out["valid"], patch)

    source = data / "geo_1" / f"{written['geo_1']['iso'][0]}.tif"
    with rasterio.open(source) as src:
        crs, transform = src.crs, src.transform
    for name, expected in [("rp", out["rp"]), ("pca", pcs), ("valid", out["valid"])]:
        with rasterio.open(tmp_path / f"{name}.tif") as src:
            assert src.crs == crs and src.crs.to_epsg() == 32631
            assert src.transform == transform
            assert (src.height, src.width) == (16, 12)
            values = np.moveaxis(src.read(), 0, -1)
        np.testing.assert_array_equal(values.reshape(expected.shape), expected)


@pytest.mark.parametrize(
    "layout, scl",
    [("dates", "band"), ("dates", "file"), ("stack", "band"), ("npz", None)],
)
def test_a_window_read_equals_the_whole_patch_cut(tmp_path, layout, scl):
    """Reading ``(row, col, rows, cols)`` of a patch gives the whole patch's pixels, labels
    and gaps there, and the transform of that corner (reference: the whole read, sliced)."""
    if layout == "npz":
        write_user_patch_folder(tmp_path, num_patches=2, size=8, digital_numbers=True)
    else:
        write_geotiff_patch_folder(
            tmp_path, num_patches=2, height=16, width=12, layout=layout, scl=scl
        )
        labels = np.arange(16 * 12, dtype=np.int32).reshape(16, 12) % 3
        for name in ("geo_0", "geo_1"):
            target = (
                tmp_path / name / "labels.tif"
                if layout == "dates"
                else tmp_path / f"{name}.labels.tif"
            )
            first = read_raster(
                next((tmp_path / name).glob("*.tif"))
                if layout == "dates"
                else tmp_path / f"{name}.tif"
            )
            write_geotiff(target, labels[..., None], crs=first.crs, transform=first.transform)
    whole = load_patch_folder(tmp_path)
    sources = patch_sources(tmp_path)
    assert [s.patch_id for s in sources] == [p.patch_id for p in whole]
    for source, patch in zip(sources, whole, strict=True):
        assert source.windowed == (layout != "npz")
        assert source.size() == (patch.height, patch.width)
        for row, col, rows, cols in [(0, 0, 1, 1), (3, 2, 5, 4), (patch.height - 2, 1, 9, 99)]:
            got = source.read((row, col, rows, cols))
            region = np.s_[row : row + rows, col : col + cols]
            np.testing.assert_array_equal(got.bands, patch.bands[:, region[0], region[1]])
            np.testing.assert_array_equal(got.dates, patch.dates)
            assert got.band_names == patch.band_names
            if patch.labels is not None:
                np.testing.assert_array_equal(got.labels, patch.labels[region])
            if patch.transform is not None:
                a, b, c, d, e, f = patch.transform[:6]
                expected = (a, b, c + col * a + row * b, d, e, f + col * d + row * e)
                assert got.transform == pytest.approx(expected)
                assert got.crs == patch.crs


@pytest.mark.parametrize(
    "name",
    [
        "{iso}_{band}.tif",
        "{band}_{compact}.tif",
        "T31UFS_{compact}T105031_{band}_10m.tif",
        "T31UFS_{compact}T105031_{band}_10m.jp2",  # as in the SAFE product, lossless
    ],
    ids=["date_band", "band_date", "sentinel2_product", "sentinel2_jp2"],
)
def test_one_file_per_band_reads_as_one_file_per_date(tmp_path, name):
    """The same patch written one band per file (three naming schemes, SCL too) reads
    exactly as its one-file-per-date original."""
    original = tmp_path / "per_date"
    written = write_geotiff_patch_folder(original, num_patches=1, scl="band")
    (expected,) = load_patch_folder(original)
    per_band = tmp_path / "per_band"
    (per_band / "geo_0").mkdir(parents=True)
    (per_band / "metadata.json").write_text((original / "metadata.json").read_text())
    for file in sorted((original / "geo_0").glob("*.tif")):
        raster = read_raster(file)
        day = file.stem
        for index, band in enumerate(raster.descriptions):
            label = {"B2": "B02", "B3": "B03", "B4": "B04", "B8": "B08"}.get(band, band)
            target = (
                per_band / "geo_0" / name.format(iso=day, compact=day.replace("-", ""), band=label)
            )
            if target.suffix == ".jp2":
                profile = dict(driver="JP2OpenJPEG", QUALITY="100", REVERSIBLE="YES")
                with rasterio.open(
                    target,
                    "w",
                    height=raster.values.shape[1],
                    width=raster.values.shape[2],
                    count=1,
                    dtype=raster.values.dtype,
                    crs=raster.crs,
                    transform=Affine(*raster.transform),
                    nodata=raster.nodata[index],
                    **profile,
                ) as dst:
                    dst.write(raster.values[index][None])
            else:
                write_geotiff(
                    target,
                    raster.values[index],
                    crs=raster.crs,
                    transform=raster.transform,
                    nodata=raster.nodata[index],
                )
    (got,) = load_patch_folder(per_band)
    assert got.band_names == ("B02", "B03", "B04", "B08")
    np.testing.assert_array_equal(got.dates, expected.dates)
    np.testing.assert_array_equal(got.bands, expected.bands)  # SCL gaps included
    assert got.crs == expected.crs and got.transform == pytest.approx(expected.transform)
    assert np.isnan(got.bands).any() and written["geo_0"]["scl"] is not None


def test_folds_of_geotiff_patches_come_from_metadata_json(tmp_path):
    write_geotiff_patch_folder(tmp_path, num_patches=2)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    (tmp_path / "metadata.json").write_text(json.dumps({**meta, "folds": {"geo_1": 3}}))
    assert [p.fold for p in load_patch_folder(tmp_path)] == [0, 3]
    (tmp_path / "metadata.json").write_text(json.dumps({**meta, "folds": {"geo_0": 0}}))
    with pytest.raises(ValueError, match="must be an int >= 1"):
        load_patch_folder(tmp_path)
