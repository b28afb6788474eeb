"""Tests for the figures: :mod:`pimc_jax.plot` (``python -m pimc_jax.plot``) and
:mod:`pimc_jax.evaluation.figures` (written by the evaluations beside ``results.md``).

Every figure kind is rendered on small fixtures (a tiny pre-training run, tiny evaluation
runs) and checked as a file: a PNG of ``figsize × dpi`` pixels that is not blank (pixel
spread, many distinct colours). The numbers drawn are checked against independent
references: the PCA map against an explicit covariance eigendecomposition, the confusion
counts and F1 bars against scikit-learn (``confusion_matrix``, ``f1_score``), the series
panel against NDVI computed by hand from the bands, the level plot's diagonal against
``np.interp`` of that NDVI, the curves against the ``metrics.jsonl`` lines written, the
forecast examples against the windows recomputed from the evaluation's data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix
from sklearn.metrics import f1_score
from tiny_configs import ROOT, load_config, tiny_pretrain_config

from pimc_jax import encode_patch, launcher, plot
from pimc_jax.data import load_patches
from pimc_jax.data.patches import Patch
from pimc_jax.data.synthetic import make_patches
from pimc_jax.evaluation.figures import (
    confusion_figure,
    forecast_figure,
    save_figure,
    write_figures,
)
from pimc_jax.evaluation.forecasting import Forecasting
from pimc_jax.evaluation.results import results_markdown
from pimc_jax.evaluation.scores import confusion_matrix
from pimc_jax.metrics import JsonlWriter

DPI = 60


def check_png(path: Path, size: tuple[int, int] | None = None, min_colours: int = 16) -> None:
    """``path`` is a non-empty PNG (of ``size`` pixels, when given) that is not blank."""
    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        if size is not None:
            assert image.size == size
        assert min(image.size) >= 150
        pixels = np.asarray(image.convert("RGB"), np.float64)
    assert pixels.std() > 10.0, "nearly uniform image"
    colours = np.unique(pixels.reshape(-1, 3), axis=0).shape[0]
    assert colours >= min_colours, f"only {colours} colours"


def saved(figure, path: Path) -> Path:
    """Saves ``figure`` at :data:`DPI` and checks it is a PNG of ``figsize × DPI`` pixels."""
    save_figure(figure, path, DPI)
    width, height = figure.get_size_inches() * DPI
    check_png(path, (round(width), round(height)))
    return path


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory) -> Path:
    """A 4-step tiny pre-training: metrics.jsonl, config.json, checkpoints at 2 and 4."""
    workdir = tmp_path_factory.mktemp("pretrain")
    config = tiny_pretrain_config(total_steps=4, checkpoint_every_steps=2)
    launcher.run(config, str(workdir))
    return workdir


def tiny_eval(name: str, workdir: Path) -> dict:
    config = load_config(f"{name}:tiny")
    config.init_from = "random"
    config.protocol = "linear"
    return launcher.run(config, str(workdir))


# --------------------------------------------------------------------------------------
# The arrays behind the figures.


def test_pca_matches_covariance_eigendecomposition():
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    embeddings = rng.normal(size=(14, 11, 6)) @ np.diag([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    embeddings = embeddings @ rotation + 3.0
    valid = rng.random((14, 11)) > 0.2
    rgb, pca = plot.pca_rgb(embeddings, valid)

    vectors = embeddings[valid]
    centred = vectors - vectors.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(vectors, rowvar=False))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    np.testing.assert_allclose(pca.explained, eigenvalues[:3] / eigenvalues.sum(), rtol=1e-10)
    for c in range(3):
        reference = centred @ eigenvectors[:, c]
        sign = np.sign(reference @ pca.projections[:, c])
        np.testing.assert_allclose(pca.projections[:, c], sign * reference, atol=1e-9)
        # Sign convention: the largest loading is positive.
        assert pca.components[c, np.argmax(np.abs(pca.components[c]))] > 0
        # Each channel: its 2nd percentile → 0, its 98th → 1, clipped.
        low, high = np.percentile(pca.projections[:, c], [2, 98])
        expected = np.clip((pca.projections[:, c] - low) / (high - low), 0, 1)
        np.testing.assert_allclose(rgb[valid][:, c], expected, atol=1e-12)
    assert rgb.shape == (14, 11, 3) and np.all(rgb[~valid] == 0.5)
    assert rgb.min() == 0.0 and rgb.max() == 1.0


def test_true_colour_is_the_median_of_the_clear_dates():
    rng = np.random.default_rng(1)
    bands = rng.uniform(0.02, 0.2, size=(5, 4, 3, 4)).astype(np.float32)  # B2, B3, B4, B8
    bands[1] = 0.5  # a cloud: bright in every band
    bands[3, :, :, 0] += 0.3  # hazy: bright blue
    patch = Patch(bands, np.arange(5, dtype=np.int32) * 10, ("B2", "B3", "B4", "B8"))
    np.testing.assert_array_equal(plot.clear_dates(patch), [0, 2, 4])
    composite = np.median(bands[[0, 2, 4]][..., [2, 1, 0]], axis=0)
    low, high = np.percentile(composite, [2, 98])
    expected = np.clip((composite - low) / (high - low), 0, 1)
    np.testing.assert_allclose(plot.true_colour(patch), expected, atol=1e-6)


def test_read_metrics_keeps_the_last_line_of_a_step(tmp_path):
    with JsonlWriter(tmp_path / "metrics.jsonl") as writer:
        writer.write(1, {"loss": 3.0, "temperature": 0.1})
        writer.write(2, {"loss": 2.5, "temperature": 0.1})
        writer.write(2, {"loss": 2.0, "temperature": 0.2, "pairs_per_second": 9.0})  # resumed
        writer.write(3, {"loss": 1.5, "temperature": 0.3, "pairs_per_second": 10.0})
    with open(tmp_path / "metrics.jsonl", "a") as file:
        file.write('{"step": 4, "lo')  # a crash mid-line
    steps, metrics = plot.read_metrics(tmp_path / "metrics.jsonl")
    np.testing.assert_array_equal(steps, [1, 2, 3])
    np.testing.assert_array_equal(metrics["loss"], [3.0, 2.0, 1.5])
    np.testing.assert_array_equal(metrics["pairs_per_second"], [np.nan, 9.0, 10.0])
    figure = plot.curves_figure(steps, metrics, chance=1 / 16)
    loss_axes = next(ax for ax in figure.axes if ax.get_title() == "InfoNCE loss")
    np.testing.assert_array_equal(loss_axes.lines[0].get_ydata(), [3.0, 2.0, 1.5])
    saved(figure, tmp_path / "curves.png")


# --------------------------------------------------------------------------------------
# Evaluation figures.


def test_confusion_figure_draws_the_counts_of_the_predictions(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, size=300)
    predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 5, size=300))
    names = ["a", "b", "c", "d", "e", "f"]  # class 4 only predicted, class 5 absent
    figure = confusion_figure(confusion_matrix(labels, predictions, 6), names)
    present = np.unique(np.concatenate([labels, predictions]))
    np.testing.assert_array_equal(present, np.arange(5))
    drawn = np.full((5, 5), -1)
    for text in figure.axes[0].texts:
        col, row = text.get_position()
        drawn[round(row), round(col)] = int(text.get_text())
    reference = sklearn_confusion_matrix(labels, predictions, labels=present)
    np.testing.assert_array_equal(drawn, reference)
    with np.errstate(invalid="ignore"):
        share = np.nan_to_num(reference / reference.sum(1, keepdims=True))  # empty row: 0
    np.testing.assert_allclose(figure.axes[0].images[0].get_array(), share)
    bars = [bar.get_width() for bar in figure.axes[1].patches]
    reference_f1 = f1_score(labels, predictions, labels=present, average=None)
    np.testing.assert_allclose(bars, reference_f1, atol=1e-12)
    saved(figure, tmp_path / "confusion.png")


def test_forecast_figure_and_write_figures(tmp_path):
    rng = np.random.default_rng(3)
    inputs, targets = rng.normal(size=(3, 12, 2)), rng.normal(size=(3, 4, 2))
    predictions = {"pimc": targets + 0.3, "zero": np.zeros_like(targets)}
    figure = forecast_figure(inputs, targets, predictions, ["ndvi", "evi"])
    panel = figure.axes[1 * 2 + 1]  # window 1, EVI
    np.testing.assert_array_equal(panel.lines[0].get_ydata(), inputs[1, :, 1])
    np.testing.assert_array_equal(panel.lines[1].get_ydata(), targets[1, :, 1])
    np.testing.assert_array_equal(panel.lines[2].get_xdata(), np.arange(12, 16))
    saved(figure, tmp_path / "forecast.png")

    results = {
        "task": "eval_pastis_forecast",
        "metrics": {"rmse_mean": 1.0},
        "forecast_examples": {
            "indices": ["ndvi", "evi"],
            "inputs": inputs.tolist(),
            "targets": targets.tolist(),
            "predictions": {k: v.tolist() for k, v in predictions.items()},
        },
        "confusion_matrix": [[0, 0], [0, 0]],  # no sample: not drawable, left out
    }
    figures = write_figures(tmp_path / "run", results)
    assert figures == {"forecast_examples": "forecast_examples.png"}
    check_png(tmp_path / "run" / "forecast_examples.png")
    markdown = results_markdown({**results, "figures": figures})
    assert markdown.endswith("## Figures\n\n![forecast_examples](forecast_examples.png)\n")


def test_classification_evaluation_writes_and_links_its_confusion_figure(tmp_path):
    returned = tiny_eval("eval_pastis_classification", tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["figures"] == returned["figures"] == {"confusion": "confusion.png"}
    check_png(tmp_path / "confusion.png")
    assert "![confusion](confusion.png)" in (tmp_path / "results.md").read_text()
    matrix = np.asarray(results["confusion_matrix"])
    assert matrix.shape == (len(results["class_names"]),) * 2 == (8, 8)
    assert matrix.sum() == results["data"]["num_test"]
    for row in results["per_class"]:
        k = row["class"]
        assert matrix[k].sum() == row["support"]
        if row["support"]:
            assert matrix[k, k] / row["support"] == pytest.approx(row["recall"])
    assert np.trace(matrix) / matrix.sum() == pytest.approx(results["metrics"]["overall_accuracy"])
    # The command redraws it from the workdir: the same counts.
    figure = plot.make_figure("confusion", workdir=tmp_path)
    present = np.flatnonzero(matrix.sum(0) + matrix.sum(1))
    drawn = np.zeros((present.size,) * 2, np.int64)
    for text in figure.axes[0].texts:
        col, row = text.get_position()
        drawn[round(row), round(col)] = int(text.get_text())
    np.testing.assert_array_equal(drawn, matrix[np.ix_(present, present)])
    check_png(plot.draw("confusion", workdir=tmp_path, out=tmp_path / "again.png", dpi=DPI))


def test_forecast_evaluation_writes_and_links_its_examples(tmp_path):
    tiny_eval("eval_pastis_forecast", tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["figures"] == {"forecast_examples": "forecast_examples.png"}
    check_png(tmp_path / "forecast_examples.png")
    assert "![forecast_examples](forecast_examples.png)" in (tmp_path / "results.md").read_text()
    examples = results["forecast_examples"]
    assert set(examples["predictions"]) == set(results["rmse_by_model"])
    inputs, targets = np.asarray(examples["inputs"]), np.asarray(examples["targets"])
    config = load_config("eval_pastis_forecast:tiny")
    assert inputs.shape[1:] == (config.forecast.input_length, 3)
    assert targets.shape[1:] == (config.forecast.horizon, 3)
    assert len(examples["rows"]) == inputs.shape[0] == min(4, results["data"]["num_test"])
    # The examples are the test windows at those rows, recomputed from the data.
    test = Forecasting(config).windows[2]
    np.testing.assert_allclose(inputs, test["inputs"][examples["rows"]], rtol=1e-6)
    np.testing.assert_allclose(targets, test["targets"][examples["rows"]], rtol=1e-6)
    assert not np.any(examples["predictions"]["zero"])
    check_png(plot.draw("forecast", workdir=tmp_path, out=tmp_path / "again.png", dpi=DPI))


# --------------------------------------------------------------------------------------
# Pre-training figures from a workdir.


def test_curves_from_a_pretraining_workdir(pretrain_dir, tmp_path):
    figure = plot.make_figure("curves", workdir=pretrain_dir)
    lines = [json.loads(line) for line in (pretrain_dir / "metrics.jsonl").read_text().splitlines()]
    retrieval = next(ax for ax in figure.axes if ax.get_title() == "in-batch retrieval top-1")
    np.testing.assert_allclose(
        retrieval.lines[1].get_ydata(), [line["image_to_rp_top1"] for line in lines]
    )
    assert retrieval.lines[2].get_ydata()[0] == pytest.approx(1 / 16)  # chance, batch 16
    small = plot.draw("curves", workdir=pretrain_dir, out=tmp_path / "small.png", dpi=40)
    large = plot.draw("curves", workdir=pretrain_dir, out=tmp_path / "large.png", dpi=80)
    check_png(large)
    with Image.open(small) as a, Image.open(large) as b:
        assert (2 * a.size[0], 2 * a.size[1]) == b.size  # figsize × dpi, nothing cropped


def test_recurrence_plots_of_pixels(pretrain_dir, tmp_path):
    pixels = [(2, 3), (9, 12)]
    figure = plot.make_figure("plots", workdir=pretrain_dir, pixels="2,3;9,12")
    saved(figure, tmp_path / "plots.png")
    config = json.loads((pretrain_dir / "config.json").read_text())
    assert config["model"]["rp_normalize"] is False and config["model"]["rp_dimension"] == 1
    patch = make_patches(
        1,
        seed=config["data"]["synthetic_seed"],
        folds=5,
        size=config["data"]["patch_size"],
        min_dates=config["data"]["synthetic_min_dates"],
        max_dates=config["data"]["synthetic_max_dates"],
    )[0]
    names = list(patch.band_names)
    size = config["model"]["rp_size"]
    for block, (row, col) in zip(figure.subfigs, pixels, strict=True):
        reflectance = patch.reflectance()[:, row, col, :].astype(np.float64)
        nir, red = reflectance[:, names.index("B8")], reflectance[:, names.index("B4")]
        ndvi = (nir - red) / (nir + red)
        counted = np.all(np.isfinite(reflectance), axis=1)
        series_axes = block.axes[0]
        assert series_axes.lines[0].get_label() == "ndvi"
        np.testing.assert_allclose(series_axes.lines[0].get_ydata(), ndvi[counted], atol=1e-5)
        panels = [ax for ax in block.axes if ax.images]
        kinds = [ax.get_ylabel() for ax in panels if ax.get_ylabel()]
        assert kinds == ["distance", "difference", "level"]
        num_indices = len(panels) // 3
        distance, difference, level = (
            np.asarray(panels[p * num_indices].images[0].get_array()) for p in range(3)
        )
        days = patch.dates[counted].astype(np.float64)
        steps = days[0] + np.arange(size) * (days[-1] - days[0]) / (size - 1)
        np.testing.assert_allclose(np.diag(level), np.interp(steps, days, ndvi[counted]), atol=1e-4)
        np.testing.assert_allclose(distance, np.abs(difference), atol=1e-6)


def test_embeddings_figure_with_tiny_params(tiny_params, tmp_path):
    patch = make_patches(1, seed=3, size=12, min_dates=8, max_dates=10)[0]
    encoded = encode_patch(tiny_params, patch.reflectance(), patch.dates, patch.band_names)
    figure = plot.embeddings_figure(patch, encoded, class_names=("background", "wheat"))
    rp_panel = next(ax for ax in figure.axes if ax.get_title().startswith("RP tower"))
    expected, _ = plot.pca_rgb(encoded["rp"], encoded["valid"])
    np.testing.assert_allclose(rp_panel.images[0].get_array(), expected)
    saved(figure, tmp_path / "embeddings.png")


def test_embeddings_and_pairs_from_a_pretraining_workdir(pretrain_dir, tmp_path):
    check_png(plot.draw("embeddings", workdir=pretrain_dir, patch=1, step=2, dpi=DPI))
    assert (pretrain_dir / "embeddings.png").is_file()
    figure = plot.make_figure("pairs", workdir=pretrain_dir, num=3)
    crops = [ax for ax in figure.axes if ax.get_ylabel().startswith("pair ")]
    assert len(crops) == 3
    crop_size = load_config("pretrain:tiny").data.crop_size
    assert all(ax.images[0].get_array().shape == (crop_size, crop_size, 3) for ax in crops)
    saved(figure, tmp_path / "pairs.png")


def test_plots_and_pairs_from_a_config_alone(tmp_path):
    config = f"{ROOT / 'configs' / 'pretrain.py'}:tiny"
    out = plot.draw("plots", config=config, out=tmp_path / "plots.png", dpi=DPI)
    check_png(out)
    patch = load_patches(load_config("pretrain:tiny").data)[0]
    assert len(plot.default_pixels(patch)) == 3
    labels = [int(patch.labels[r, c]) for r, c in plot.default_pixels(patch)]
    assert len(set(labels)) == 3  # three different classes
    check_png(plot.draw("pairs", config=config, out=tmp_path / "pairs.png", num=2, dpi=DPI))


# --------------------------------------------------------------------------------------
# The command line.


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("confusion", "results.json not found"),
        ("forecast", "results.json not found"),
        ("curves", "metrics.jsonl not found"),
        ("embeddings", "holds no checkpoint"),
        ("plots", "holds no config"),
    ],
)
def test_missing_inputs_give_one_line(kind, message, tmp_path, capsys):
    assert plot.main([kind, f"--workdir={tmp_path}"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("FATAL: ") and message in error


def test_wrong_workdir_or_options_give_one_line(pretrain_dir, tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps({"metrics": {}, "config": {}}))
    cases = [
        (["confusion", f"--workdir={pretrain_dir}"], "FileNotFoundError: ", "results.json"),
        (["confusion", f"--workdir={tmp_path}"], "ValueError: ", "no 'confusion_matrix'"),
        (["forecast", f"--workdir={tmp_path}"], "ValueError: ", "no 'forecast_examples'"),
        (["plots", f"--workdir={pretrain_dir}", "--pixels=1;2"], "ValueError: ", "ROW,COL"),
        (["plots", f"--workdir={pretrain_dir}", "--pixels=99,0"], "ValueError: ", "outside"),
        (["embeddings", f"--workdir={pretrain_dir}", "--patch=99"], "ValueError: ", "--patch"),
        (["curves", f"--workdir={tmp_path / 'none'}"], "FileNotFoundError: ", "no workdir"),
    ]
    for argv, error_type, message in cases:
        assert plot.main(argv) == 1, argv
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("FATAL: " + error_type), error
        assert message in error, error


def test_module_command(pretrain_dir, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "curves.png"
    command = [sys.executable, "-m", "pimc_jax.plot", "curves", f"--workdir={pretrain_dir}"]
    done = subprocess.run(
        [*command, f"--out={out}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    check_png(out)
    done = subprocess.run(
        [sys.executable, "-m", "pimc_jax.plot", "confusion", f"--workdir={pretrain_dir}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("FATAL: ")
