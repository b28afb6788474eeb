"""The README's benchmark commands run and print their ratios (tiny sizes; no timing asserted)."""

import os
import re
import subprocess
import sys

import pytest
from format_writers import write_user_npz
from tiny_configs import ROOT, perturbed, strided_encoder


def _run(*args: str) -> str:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _ratio(output: str, label: str) -> float:
    match = re.search(re.escape(label) + r"\s*([0-9.]+)x", output)
    assert match, output
    return float(match.group(1))


@pytest.mark.slow
def test_recurrence_bench():
    out = _run("bench/recurrence.py", "--n", "64", "--t", "12", "--repeats", "1")
    assert _ratio(out, "speed-up JAX/pyts:") > 0
    assert _ratio(out, "speed-up JAX/NumPy:") > 0


@pytest.mark.slow
def test_train_step_bench_one_and_two_devices():
    out = _run(
        "bench/train_step.py",
        "--devices=1,2",
        "--repeats=1",
        "--set",
        "global_batch_size=16",
        "--set",
        "data.num_patches=4",
    )
    assert _ratio(out, "pairs/s ratio 2 vs 1 device(s):") > 0
    shares = re.findall(r"([0-9.]+)%", out)
    assert len(shares) == 2 and all(0 < float(s) <= 100 for s in shares)


@pytest.mark.slow
def test_train_step_bench_flag_sets_reach_the_step():
    out = _run(
        "bench/train_step.py", "--flag_sets=default|none|--xla_cpu_use_onednn=true",
        "--rounds=1", "--repeats=1", "--set", "global_batch_size=16", "--set",
        "data.num_patches=4",
    )  # fmt: skip
    ran = dict(re.findall(r"^(.+): the step's process ran with XLA_FLAGS='(.*)'$", out, re.M))
    assert "ynn_fusion_type=INDIVIDUAL_CONVOLUTION" in ran["default"]
    assert "ynn" not in ran["none"] and "onednn" not in ran["none"]
    assert "--xla_cpu_use_onednn=true" in ran["--xla_cpu_use_onednn=true"]
    rows = re.findall(r"^\| `(.+)` \| ([0-9.]+) \| ([0-9.]+)x \|$", out, re.M)
    assert [row[0] for row in rows] == ["default", "none", "--xla_cpu_use_onednn=true"]
    assert rows[0][2] == "1.00" and all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows)


@pytest.mark.slow
def test_input_pipeline_bench():
    out = _run("bench/input_pipeline.py", "--batches", "3", "--threads", "1")
    assert _ratio(out, "ratio delivered/consumed:") > 0


def test_pixel_benchmark_rows_share_folds(tmp_path):
    path = tmp_path / "pixels.npz"
    write_user_npz(path, num_pixels=40, num_dates=6, num_classes=3)
    _assert_rows_share_folds(path, folds=2)


@pytest.mark.slow
def test_pixel_benchmark_prints_every_row(tmp_path):
    path = tmp_path / "pixels.npz"
    write_user_npz(path, num_pixels=40, num_dates=6, num_classes=3)
    out = _run(
        "bench/pixel_benchmark.py",
        str(path),
        "--folds=2",
        "--seeds=1",
        "--rows=rf,pimc,pimc_paper",
        "--set=finetune.steps=4",
        "--set=finetune.eval_every_steps=2",
        "--set=finetune.ensemble_members=1",  # the ensemble path: test_evaluation.py
        "--set=model.rp_size=8",
    )
    table = {
        line.split("|")[1].strip(): line
        for line in out.splitlines()
        if line.startswith("| ") and "±" in line
    }
    # The rows asked for (the pimc row adds its tower-and-trees blends from the same run).
    assert {"rf", "pimc", "pimc_paper"} <= set(table)
    assert all(row in ("rf", "pimc_paper") or row.startswith("pimc") for row in table)
    for line in table.values():
        accuracy = float(line.split("|")[2].split("±")[0])
        assert 0.0 <= accuracy <= 1.0


def test_pixel_benchmark_scores_what_the_library_predicts(tmp_path):
    """The ``pimc`` row's score, from the live run and re-blended from its saved
    probabilities (``--from_probabilities``), equals the library's own evaluation of the
    same fold with its defaults (cross-fitted ensemble, trees, prior correction)."""
    import argparse

    sys.path.insert(0, str(ROOT / "bench"))
    import pixel_benchmark

    from pimc_jax.evaluation.pixel_classification import PixelClassification

    path = tmp_path / "pixels.npz"
    write_user_npz(path, num_pixels=40, num_dates=6, num_classes=3)
    settings = ["model.rp_size=8", "finetune.steps=4", "finetune.eval_every_steps=2"]
    settings += ["finetune.ensemble_members=2", "finetune.log_every_steps=0"]
    args = argparse.Namespace(folds=2, eval_seed=0, set=settings)
    config = pixel_benchmark._config("", str(path), args, 1, 0)
    assert config.finetune.prior_correction == "auto" and config.finetune.trees == "auto"
    evaluator = PixelClassification(config)
    metrics = evaluator.run(evaluator.random_params())["metrics"]
    expected = (metrics["overall_accuracy"], metrics["macro_f1"])

    variants: dict[str, list] = {}
    saved = tmp_path / "saved" / f"{path.stem}_pimc_fold1_seed0.npz"
    saved.parent.mkdir()
    score = pixel_benchmark._pimc_row(config, None, variants, str(saved))
    assert score == pytest.approx(expected, abs=1e-12)
    assert variants["[trees=forest,prior=auto]"] == [score]  # auto: the forest below 100 px
    again = pixel_benchmark.from_probabilities(str(path), str(saved.parent), args)
    assert again["pimc"] == [score]
    assert again["pimc[trees=none]"] == variants["[trees=none]"]


def _assert_rows_share_folds(path, folds: int) -> None:
    """Every row of the benchmark scores fold ``i`` on the same test pixels, and the test
    folds are a stratified partition of the pixels."""
    import argparse

    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    import pixel_benchmark

    from pimc_jax.data.user import load_pixel_npz
    from pimc_jax.evaluation.pixel_classification import PixelClassification
    from pimc_jax.evaluation.pixels import seeded_split_rows

    pixels = load_pixel_npz(path)
    labels = pixels.labels.astype(np.int64)
    args = argparse.Namespace(folds=folds, eval_seed=0, set=["model.rp_size=8"])
    test_folds = []
    for fold in range(folds):
        # The baselines' rows, as the benchmark computes them.
        base = pixel_benchmark._config("", str(path), args, fold, 0)
        train, val, test = seeded_split_rows(labels, base.data, with_test=True)
        assert not (set(train) | set(val)) & set(test)
        test_folds.append(np.sort(test))
        for variant in ("", "paper"):  # the pimc and pimc_paper rows
            config = pixel_benchmark._config(variant, str(path), args, fold, 0)
            held_out = PixelClassification(config).splits.test
            np.testing.assert_array_equal(held_out["labels"], labels[test])
            np.testing.assert_array_equal(held_out["bands"], pixels.bands[test])
    # A partition: each pixel in exactly one test fold, each class split evenly.
    every = np.concatenate(test_folds)
    np.testing.assert_array_equal(np.sort(every), np.arange(labels.size))
    for k in np.unique(labels):
        counts = [np.sum(labels[f] == k) for f in test_folds]
        assert max(counts) - min(counts) <= 1, (k, counts)


@pytest.mark.slow
def test_accelerator_script_cpu_form(tmp_path):
    """``bench/accelerator.sh --cpu``: every section runs and prints its numbers, and the
    markdown copy is written."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", PYTHON=sys.executable)
    env["OUT"] = str(tmp_path)
    done = subprocess.run(
        ["bash", "bench/accelerator.sh", "--cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    out = (tmp_path / "accelerator.md").read_text()
    assert out == done.stdout
    sections = re.findall(r"^## (.+)$", out, re.M)
    assert [s.split(",")[0] for s in sections[:3]] == [
        "Device",
        "Pre-training step",
        "Pre-training step",
    ]
    assert len(re.findall(r"^\s+1\s+[0-9.]+\s+[0-9]+\s", out, re.M)) == 2  # one row per config
    assert _ratio(out, "px/s ratio exact/baseline (default):") > 0
    assert _ratio(out, "speed-up JAX/pyts:") > 0


@pytest.mark.slow
def test_dense_encode_bench_runs_each_part():
    out = _run(
        "bench/dense_encode.py",
        "--layouts=default",
        "--size=16",
        "--repeats=1",
        "--train-steps=0",
        "--raster=40",
        "--chunk-pixels=400",
    )
    assert _ratio(out, "px/s ratio exact/baseline (default):") > 0
    assert _ratio(out, "px/s ratio fast/baseline (default):") > 0
    cosine = re.search(r"cosine similarity: mean ([-0-9.]+)", out)
    assert cosine and -1.0 <= float(cosine.group(1)) <= 1.0, out
    assert re.search(r"exact +\d+ +\d+ +\d+", out) and re.search(r"fast +\d+ +\d+ +\d+", out)


@pytest.mark.slow
def test_train_step_bench_against_torch():
    pytest.importorskip("torch")
    out = _run(
        "bench/train_step.py",
        "--vs-torch",
        "--layouts=default",
        "--repeats=1",
        "--per-round=1",
        "--set",
        "global_batch_size=16",
        "--set",
        "data.num_patches=4",
    )
    assert _ratio(out, "step time jax step/torch (default):") > 0
    assert _ratio(out, "step time jax model/torch (default):") > 0


def test_torch_reference_computes_the_jax_loss_and_gradients():
    torch = pytest.importorskip("torch")
    import jax
    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    import torch_reference

    from pimc_jax.loss import symmetric_infonce
    from pimc_jax.models import PIMC, ModelSpec, init_params

    # Two stages with a stride-2 block (Flax's asymmetric "SAME" padding) and the
    # ImageNet stem, random weights without the zero-initialised scales.
    encoder = strided_encoder((8, 16), norm_groups=4)
    spec = ModelSpec(rp_encoder=encoder, image_encoder=encoder, rp_size=16, crop_size=16)
    variables = perturbed(init_params(spec, 0)).variables
    rng = np.random.default_rng(0)
    plots = rng.normal(size=(8, 16, 16, spec.rp_input_channels)).astype(np.float32)
    crops = rng.normal(size=(8, 16, 16, len(spec.image_bands))).astype(np.float32)

    def loss_fn(v):
        out = PIMC(spec).apply(v, plots, crops)
        return symmetric_infonce(out["z_rp"], out["z_image"], out["temperature"])[0]

    loss, grads = jax.value_and_grad(loss_fn)(variables)
    step = torch_reference.make_step(spec, variables=variables, channels_last=False)
    t_loss = torch_reference.symmetric_infonce(*step.model(*step.inputs(plots, crops)))
    t_loss.backward()
    np.testing.assert_allclose(float(t_loss.detach()), float(loss), rtol=1e-5)
    kernel = np.asarray(grads["params"]["image_encoder"]["ResidualBlock_1"]["conv1"]["kernel"])
    t_kernel = step.model.image_encoder.blocks[1].conv1.conv.weight.grad.numpy()
    np.testing.assert_allclose(t_kernel, kernel.transpose(3, 2, 0, 1), atol=1e-6)
    scale = float(grads["params"]["logit_scale"])
    assert abs(float(step.model.logit_scale.grad) - scale) <= 1e-5 * max(1.0, abs(scale))
    assert isinstance(t_loss, torch.Tensor)


@pytest.mark.slow
def test_eval_compile_reuse_bench_compares_equal_outputs():
    import json

    out = json.loads(_run("bench/eval_compile_reuse.py", "--pixels=8", "--repeats=1"))
    assert out["max_abs_difference"] == 0.0  # the cached and rebuilt forwards agree
    assert out["rebuilt_over_cached"] > 0


def test_label_efficiency_draws_are_spatially_blocked():
    """A draw takes k pixels per class, and tests on labelled pixels of other tiles than
    the training pixels' and farther than ``buffer`` (Chebyshev) from every one of them."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    import label_efficiency

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(40, 36))
    labels[rng.random(labels.shape) < 0.1] = -1  # left out
    block, buffer, k = 8, 3, 4
    for seed in range(5):
        train, test = label_efficiency.draw(labels, k, block, buffer, np.random.default_rng(seed))
        flat = labels.ravel()
        assert all(np.sum(flat[train] == c) == k for c in range(3))
        assert test.size and np.all(flat[test] >= 0) and not set(train) & set(test)
        rows, cols = np.divmod(train, labels.shape[1])
        t_rows, t_cols = np.divmod(test, labels.shape[1])
        tiles = lambda r, c: (r // block) * -(-labels.shape[1] // block) + c // block
        assert not set(tiles(rows, cols)) & set(tiles(t_rows, t_cols))
        gap = np.maximum(
            np.abs(t_rows[:, None] - rows[None]), np.abs(t_cols[:, None] - cols[None])
        ).min(axis=1)
        assert gap.min() > buffer


def test_label_efficiency_self_training_pool_stays_away_from_the_test_pixels(tmp_path):
    # The unlabelled pixels for self-training: none drawn for training, none within the
    # buffer of a test pixel; runs over the same draws join row by row (first file wins).
    import json

    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    import label_efficiency

    labels = np.random.default_rng(1).integers(0, 3, size=(40, 36))
    train, test = label_efficiency.draw(labels, 4, 8, 3, np.random.default_rng(2))
    pool = label_efficiency.unlabelled_pool(
        labels.shape, train, test, 3, 50, np.random.default_rng(3)
    )
    assert pool.size == np.unique(pool).size == 50 and not set(pool) & set(train)
    rows, cols = np.divmod(pool, labels.shape[1])
    t_rows, t_cols = np.divmod(test, labels.shape[1])
    gap = np.maximum(np.abs(rows[:, None] - t_rows[None]), np.abs(cols[:, None] - t_cols[None]))
    assert gap.min() > 3
    everything = label_efficiency.unlabelled_pool(
        labels.shape, train, test, 3, 10**6, np.random.default_rng(3)
    )
    far = (
        np.maximum(
            np.abs(np.arange(40)[:, None, None] - t_rows),
            np.abs(np.arange(36)[None, :, None] - t_cols),
        ).min(-1)
        > 3
    )
    assert sorted(everything) == sorted(set(np.flatnonzero(far)) - set(train))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"5": {"forest": [[0.5, 0.4]]}}))
    b.write_text(json.dumps({"5": {"forest": [[0.9, 0.9]], "rf": [[0.6, 0.3]]}}))
    assert label_efficiency._merged([str(a), str(b)]) == {
        "5": {"forest": [[0.5, 0.4]], "rf": [[0.6, 0.3]]}
    }


def test_label_efficiency_features_side_by_side_and_reduced(tiny_params):
    # Each list of encode_patch outputs side by side; with components, each output of the
    # forest's list reduced to its first principal components over the patch's pixels.
    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    import label_efficiency

    from pimc_jax.data.synthetic import make_patch
    from pimc_jax.encode import encode_patch
    from pimc_jax.pca import principal_components

    params, patch = perturbed(tiny_params), make_patch(0, 0, size=8)
    out = encode_patch(params, patch, progress=False)
    forest, linear = label_efficiency.embed(params, patch, [["rp", "image"], ["rp_features"]], 3)
    np.testing.assert_allclose(linear, out["rp_features"].reshape(64, -1), atol=1e-6)
    want = [principal_components(out[name], 3).reshape(64, 3) for name in ("rp", "image")]
    np.testing.assert_allclose(forest, np.concatenate(want, axis=1), atol=1e-4)


@pytest.mark.slow
def test_conv_kernels_bench_against_nchw():
    # No PyTorch needed: every convolution of the model in NHWC against JAX in NCHW (the
    # bench checks both give the same output before it times them).
    out = _run(
        "bench/conv_kernels.py", "--against=nchw", "--layouts=default", "--repeats=1",
        "--set", "global_batch_size=8",
    )  # fmt: skip
    rows = re.findall(r"^\| conv .+$", out, re.M)
    assert rows and "GroupNorm" not in out.split("### layout")[1].replace("all GroupNorms", "")
    assert re.search(r"\*\*all convolutions\*\* \|  \| \d+ \|", out)
