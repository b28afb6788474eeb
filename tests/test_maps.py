"""The map tasks ``embed`` and ``classify_map`` on a GeoTIFF patch folder.

References: the georeference the fixture writer stored (CRS, transform); the files read
back with rasterio directly (tiling, overviews, descriptions, colour table, the COG
layout GDAL reports); :func:`pimc_jax.encode.encode_patch` on the whole patch for the
window-by-window embeddings; an uninterrupted run for an interrupted and resumed one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from format_writers import UTM31N, write_geotiff_patch_folder
from tiny_configs import ROOT, load_config, one_cpu_env

from pimc_jax.data.user import load_patch_folder
from pimc_jax.encode import encode_patch
from pimc_jax.launcher import run
from pimc_jax.maps import cog
from pimc_jax.maps import embed as embed_lib
from pimc_jax.maps.classify import block_split
from pimc_jax.maps.embed import LoadedPatch, load_map_encoder

FINAL_SUFFIXES = (".embeddings.tif", ".valid.tif", ".pca.png")


def _add_labels(folder: Path) -> None:
    """A labels.tif in each dated folder: 0 (unlabelled) on the top rows, classes 1, 2, 7."""
    for patch in sorted(p for p in folder.iterdir() if p.is_dir()):
        with rasterio.open(sorted(patch.glob("2*.tif"))[0]) as src:
            profile = dict(driver="GTiff", height=src.height, width=src.width, count=1,
                           dtype="uint8", crs=src.crs, transform=src.transform)  # fmt: skip
        labels = np.ones((src.height, src.width), np.uint8)
        labels[:, src.width // 2 :] = 2
        labels[src.height // 2 :, :3] = 7
        labels[:2] = 0
        with rasterio.open(patch / "labels.tif", "w", **profile) as dst:
            dst.write(labels[None])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("maps") / "tifs"
    written = write_geotiff_patch_folder(root, num_patches=2, height=16, width=12)
    _add_labels(root)
    return root, written


def _config(name: str, data_path: Path, **overrides):
    config = load_config(f"{name}:tiny")
    config.init_from = "random"
    config.data.path = str(data_path)
    config.update_from_flattened_dict(overrides)
    return config


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def _check_cog(path: Path, written: dict) -> rasterio.io.DatasetReader:
    """Opens ``path`` and checks it is a tiled COG with overviews on the input's grid."""
    src = rasterio.open(path)
    assert src.crs == rasterio.crs.CRS.from_string(written["crs"])
    assert tuple(src.transform)[:6] == pytest.approx(written["transform"])
    assert src.profile["tiled"] and src.block_shapes[0][0] >= 128
    assert src.overviews(1), path
    assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    return src


@pytest.fixture(scope="module")
def embedded(folder, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("embed")
    run(_config("embed", folder[0]), str(workdir))
    return workdir


def test_embed_writes_cogs_on_the_input_grid(folder, embedded):
    _, written = folder
    out = embedded / "embeddings"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{name}{suffix}" for name in written for suffix in FINAL_SUFFIXES
    )
    for name, facts in written.items():
        assert facts["crs"] == UTM31N
        with _check_cog(out / f"{name}.embeddings.tif", facts) as src:
            assert src.count == 16 and src.dtypes[0] == "float32"
            assert src.descriptions == tuple(
                [f"rp_{i:02d}" for i in range(8)] + [f"image_{i:02d}" for i in range(8)]
            )
            tags = src.tags()
            assert tags["checkpoint"] == "random" and tags["views"] == "s2_rp,s2_image"
            assert tags["towers"] == "rp,image" and tags["patch"] == name
        with _check_cog(out / f"{name}.valid.tif", facts) as src:
            valid = src.read(1)
        assert set(np.unique(valid)) <= {0, 1} and valid.mean() > 0.9
    summary = json.loads((embedded / "embed.json").read_text())
    assert summary["written"] == 2 and summary["pixels"] == 2 * 16 * 12


def test_windows_equal_the_whole_patch(folder, embedded):
    config = _config("embed", folder[0])
    patches = load_patch_folder(folder[0])
    params, _ = load_map_encoder(config, [LoadedPatch(p) for p in patches])
    assert config.maps.window_size < patches[0].height  # several windows per patch
    for patch in patches:
        whole = encode_patch(params, patch, progress=False)
        expected = np.concatenate([whole["rp"], whole["image"]], axis=-1)
        expected[~whole["valid"]] = np.nan
        got = np.moveaxis(
            _read(embedded / "embeddings" / f"{patch.patch_id}.embeddings.tif"), 0, -1
        )
        np.testing.assert_allclose(got, expected, atol=2e-5)


class _Killed(Exception):
    pass


def test_interrupted_embed_resumes_to_the_same_files(folder, embedded, tmp_path, monkeypatch):
    workdir = tmp_path / "resumed"
    real_write = cog.write_window
    calls = {"n": 0}

    def dying_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # patch 0: 2 of its 4 windows fully saved, the third half
            raise _Killed
        real_write(*args, **kwargs)

    monkeypatch.setattr(embed_lib.cog, "write_window", dying_write)
    with pytest.raises(_Killed):
        run(_config("embed", folder[0]), str(workdir))
    out = workdir / "embeddings"
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith(FINAL_SUFFIXES)], names
    assert json.loads((out / "geo_0.embed_state.json").read_text())["done"] == [0, 1]
    monkeypatch.setattr(embed_lib.cog, "write_window", real_write)
    resumed = run(_config("embed", folder[0]), str(workdir))
    assert resumed["written"] == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (embedded / "embeddings").iterdir()
    )
    for name in ("geo_0", "geo_1"):
        for suffix in (".embeddings.tif", ".valid.tif"):
            np.testing.assert_array_equal(
                _read(out / f"{name}{suffix}"), _read(embedded / "embeddings" / f"{name}{suffix}")
            )
    again = run(_config("embed", folder[0]), str(workdir))  # a finished run is skipped
    assert again["skipped"] == 2 and again["written"] == 0


def test_rerun_with_another_encoder_is_refused(folder, embedded):
    config = _config("embed", folder[0], **{"maps.towers": ("rp",)})
    with pytest.raises(ValueError, match="towers="):
        run(config, str(embedded))


@pytest.mark.parametrize("dtype, tolerance", [("float16", 2e-3), ("int8", 0.5 / 127 + 1e-6)])
def test_smaller_storage(folder, embedded, tmp_path, dtype, tolerance):
    run(_config("embed", folder[0], **{"maps.dtype": dtype}), str(tmp_path))
    reference = _read(embedded / "embeddings" / "geo_0.embeddings.tif")
    with rasterio.open(tmp_path / "embeddings" / "geo_0.embeddings.tif") as src:
        values = src.read().astype(np.float64)
        if dtype == "int8":
            assert src.dtypes[0] == "int8" and src.scales[0] == pytest.approx(1 / 127)
            values = np.where(values == src.nodata, np.nan, values * src.scales[0])
        else:
            assert src.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") == "16"  # IEEE half floats
            np.testing.assert_array_equal(values, values.astype(np.float16))
    np.testing.assert_allclose(values, reference, atol=tolerance)


def test_blocked_split_holds_out_whole_blocks():
    labelled = [np.ones((16, 12), bool), np.zeros((16, 12), bool)]
    labelled[1][8:, :] = True
    held = block_split(labelled, 4, 0.3, seed=0)
    count = sum(int(m[::4, ::4].sum()) for m in held)
    assert count == round(0.3 * (12 + 6))
    for mask, test in zip(labelled, held, strict=True):
        blocks = test.reshape(4, 4, 3, 4).transpose(0, 2, 1, 3).reshape(4, 3, 16)
        assert np.all(blocks.all(-1) | ~blocks.any(-1))  # each block wholly in or out
        assert not np.any(test & ~mask)
    with pytest.raises(ValueError, match="at least 2"):
        block_split([np.ones((4, 4), bool)], 4, 0.3, seed=0)


def test_classify_map(folder, embedded, tmp_path):
    root, written = folder
    config = _config(
        "classify_map",
        root,
        embeddings_from=str(embedded),
        **{"classifier.class_names": ("7:water",)},
    )
    results = run(config, str(tmp_path / "fit"))
    assert 0 <= results["metrics"]["overall_accuracy"] <= 1
    assert 0 <= results["metrics"]["macro_f1"] <= 1
    assert [row["class"] for row in results["per_class"]] == [1, 2, 7]
    assert results["data"]["test_pixels"] > 0 and results["data"]["train_pixels"] > 0
    fit = tmp_path / "fit"
    assert "![class map](class_map.png)" in (fit / "results.md").read_text()
    assert (fit / "class_map.png").stat().st_size > 0
    assert json.loads((fit / "results.json").read_text())["metrics"] == results["metrics"]
    for name, facts in written.items():
        with _check_cog(fit / "maps" / f"{name}.classes.tif", facts) as src:
            classes = src.read(1)
            assert set(np.unique(classes)) <= {1, 2, 7, src.nodata}
            assert src.descriptions == ("class",)
            assert json.loads(src.tags()["class_names"]) == {
                "1": "class 1", "2": "class 2", "7": "water"
            }  # fmt: skip
            colours = src.colormap(1)
            assert len({colours[1], colours[2], colours[7]}) == 3
        with _check_cog(fit / "maps" / f"{name}.probabilities.tif", facts) as src:
            assert src.descriptions == ("class 1", "class 2", "water")
            probs = src.read()
        finite = np.isfinite(probs).all(0)
        np.testing.assert_allclose(probs[:, finite].sum(0), 1.0, atol=1e-5)
    assert results["protocol"].startswith("extremely randomised trees of 300 trees")
    # The saved classifier maps a folder again, without training.
    again = _config(
        "classify_map",
        root,
        embeddings_from=str(embedded),
        classifier_from=str(fit / "classifier.joblib"),
    )
    run(again, str(tmp_path / "apply"))
    for name in written:
        np.testing.assert_array_equal(
            _read(tmp_path / "apply" / "maps" / f"{name}.classes.tif"),
            _read(fit / "maps" / f"{name}.classes.tif"),
        )


def _labelled_features(root: Path, embedded: Path, series: bool):
    """Per patch (folder order): features of every pixel (embeddings read back from the
    COGs, then the raw series in (T, C) order), the labels and the valid pixels."""
    out = []
    for patch in load_patch_folder(root):
        with rasterio.open(embedded / "embeddings" / f"{patch.patch_id}.embeddings.tif") as src:
            values = np.moveaxis(src.read(), 0, -1).astype(np.float32)
        with rasterio.open(embedded / "embeddings" / f"{patch.patch_id}.valid.tif") as src:
            valid = src.read(1).astype(bool)
        if series:
            raw = patch.reflectance().transpose(1, 2, 0, 3).reshape(*valid.shape, -1)
            values = np.concatenate([values, raw], axis=-1)
        out.append((patch.patch_id, values, patch.labels, valid))
    return out


def _one_patch_folder(folder: Path, patch_id: str, path: Path) -> Path:
    """A copy of the fixture folder holding only ``patch_id`` (so that every patch of it has
    as many dates, and its embeddings are read back from the fixture's embed run)."""
    shutil.copytree(folder / patch_id, path / patch_id)
    shutil.copy(folder / "metadata.json", path / "metadata.json")
    return path


@pytest.mark.parametrize(
    "model, one_patch",
    [("extra_trees", True), ("extra_trees", False), ("forest", True), ("linear", True)],
)
def test_classify_map_equals_scikit_learn(folder, embedded, tmp_path, model, one_patch):
    # The map is drawn by the model refitted on every labelled pixel: the same model built
    # here with scikit-learn from the rasters gives the same class at every valid pixel.
    # The forest reads each pixel's raw band series beside its embeddings when every patch
    # holds as many dates (one patch), the embeddings alone otherwise (5 and 6 dates).
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    root = folder[0]
    if one_patch:
        root = _one_patch_folder(root, "geo_0", tmp_path / "one")
    config = _config("classify_map", root, embeddings_from=str(embedded))
    config.classifier.model = model
    results = run(config, str(tmp_path / "fit"))
    series = model != "linear" and one_patch
    assert results["protocol"].endswith("and the raw band series") == series
    patches = _labelled_features(root, embedded, series)
    x = np.concatenate([v[(lab != 0) & ok] for _, v, lab, ok in patches])
    y = np.concatenate([lab[(lab != 0) & ok] for _, v, lab, ok in patches])
    if model != "linear":
        fill = np.nanmean(x, axis=0)
        trees = ExtraTreesClassifier if model == "extra_trees" else RandomForestClassifier
        reference = trees(n_estimators=300, random_state=0, n_jobs=-1)
        reference.fit(np.where(np.isnan(x), fill, x), y)
        predict = lambda v: reference.predict(np.where(np.isnan(v), fill, v))
        assert (tmp_path / "fit" / "classifier.joblib").is_file()
    else:
        scaler = StandardScaler().fit(x)
        reference = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x), y)
        predict = lambda v: reference.predict(scaler.transform(v))
        saved = np.load(tmp_path / "fit" / "classifier.npz")  # the documented NumPy use
        logits = ((x - saved["mean"]) / saved["scale"]) @ saved["weights"].T + saved["bias"]
        np.testing.assert_array_equal(saved["codes"][logits.argmax(1)], predict(x))
    for patch_id, values, _, ok in patches:
        got = _read(tmp_path / "fit" / "maps" / f"{patch_id}.classes.tif")[0]
        np.testing.assert_array_equal(got[ok], predict(values[ok]))


def test_classify_map_series_settings_say_what_to_change(folder, embedded, tmp_path):
    root = folder[0]
    one = _one_patch_folder(root, "geo_0", tmp_path / "one")
    fit = tmp_path / "fit"
    run(_config("classify_map", one, embeddings_from=str(embedded)), str(fit))
    # A patch with another number of dates is refused by the saved forest, with the fix.
    other = _one_patch_folder(root, "geo_1", tmp_path / "other")
    again = _config(
        "classify_map", other, embeddings_from=str(embedded),
        classifier_from=str(fit / "classifier.joblib"),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"reads raw series of 5 dates x 4 bands.*\(6, 4\)"):
        run(again, str(tmp_path / "again"))
    bad = [({"classifier.series": "true"}, "different numbers of dates and bands"),
           ({"classifier.series": "maybe"}, "classifier.series must be auto, true or false"),
           ({"classifier.model": "svm"}, "classifier.model must be one of")]  # fmt: skip
    for overrides, message in bad:
        config = _config("classify_map", root, embeddings_from=str(embedded), **overrides)
        with pytest.raises(ValueError, match=message):
            run(config, str(tmp_path / "bad"))


def test_classify_map_without_labels_says_so(tmp_path):
    root = tmp_path / "tifs"
    write_geotiff_patch_folder(root, num_patches=1, height=16, width=12)
    with pytest.raises(ValueError, match="no labelled pixel"):
        run(_config("classify_map", root), str(tmp_path / "out"))


@pytest.mark.slow
def test_kill_9_during_embed_then_resume(folder, tmp_path):
    """``launch.py`` killed with SIGKILL while it writes windows; no final name ever holds a
    partial file, and the rerun gives the uninterrupted run's arrays."""
    root = folder[0]
    command = [
        sys.executable, str(ROOT / "launch.py"), "--config=configs/embed.py:tiny",
        "--config.init_from=random", f"--config.data.path={root}", "--config.maps.window_size=2",
    ]  # fmt: skip
    env = one_cpu_env(PIMC_JAX_PROGRESS="0")
    reference = tmp_path / "reference"
    subprocess.run([*command, f"--workdir={reference}"], cwd=ROOT, env=env, check=True,
                   capture_output=True)  # fmt: skip
    workdir = tmp_path / "killed"
    out = workdir / "embeddings"
    process = subprocess.Popen([*command, f"--workdir={workdir}"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    state = out / "geo_1.embed_state.json"
    while time.time() < deadline and process.poll() is None:
        if state.is_file() and len(json.loads(state.read_text() or "{}").get("done", [])) >= 3:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "geo_1.embeddings.tif").exists()
    for path in out.glob("*.embeddings.tif"):  # geo_0 finished: complete files only
        np.testing.assert_array_equal(_read(path), _read(reference / "embeddings" / path.name))
    subprocess.run([*command, f"--workdir={workdir}"], cwd=ROOT, env=env, check=True,
                   capture_output=True)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (reference / "embeddings").iterdir()
    )
    for path in (reference / "embeddings").glob("*.tif"):
        np.testing.assert_array_equal(_read(out / path.name), _read(path))


def test_a_window_of_no_data_only_is_written_invalid(tmp_path):
    """A raster whose first window holds only no-data (an edge of a tile, the sea) embeds:
    that window is invalid (NaN, valid 0) and the others are not."""
    root = tmp_path / "tifs"
    write_geotiff_patch_folder(root, num_patches=1, height=16, width=24)
    for file in sorted((root / "geo_0").glob("*.tif")):
        with rasterio.open(file, "r+") as dst:
            values = dst.read()
            values[:, :, :16] = -9999  # the files' nodata: window (0, 0) and its halo
            dst.write(values)
    workdir = tmp_path / "out"
    run(_config("embed", root), str(workdir))
    valid = _read(workdir / "embeddings" / "geo_0.valid.tif")[0]
    embeddings = _read(workdir / "embeddings" / "geo_0.embeddings.tif")
    assert not valid[:8, :8].any() and np.isnan(embeddings[:, :8, :8]).all()
    assert valid[:, 23].all() and np.isfinite(embeddings[:, :, 23]).all()
