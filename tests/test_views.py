"""Views as config: which view feeds each tower (``model.views``), Sentinel-1 included.

References: a NumPy nearest-date search written out here (the S1 date of an ``s1_image``
crop), the patch arrays themselves (the crops and series a batch holds), ln(batch) for the
InfoNCE loss of an untrained model, and the fixture writers' pixel counts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from format_writers import write_pastis_dir
from test_cli import FORECAST, LINEAR, PASTIS_FOLDS, launch, launch_ok
from tiny_configs import tiny_pretrain_config

from pimc_jax.checkpoint import read_meta
from pimc_jax.data.pairs import PairSampler
from pimc_jax.data.patches import Patch
from pimc_jax.data.pixels import sample_pixels
from pimc_jax.data.synthetic import make_patches
from pimc_jax.data.views import VIEW_KEYS, choose_image_dates, crop_indices, s1_image_dates
from pimc_jax.models import ModelSpec, init_params
from pimc_jax.preprocessing import view_inputs
from pimc_jax.train import build_pretraining, validate_pretrain_config

PAIRINGS = [
    ("s2_rp", "s2_image"),
    ("s1_image", "s2_image"),
    ("s1_rp", "s2_image"),
    ("s2_rp", "s1_image"),
]
IDS = ["-".join(views) for views in PAIRINGS]
BATCH = 16
STEPS = 2


def _views_flag(views: tuple[str, str]) -> str:
    return f"--config.model.views=('{views[0]}','{views[1]}')"


def _nearest_reference(s1_days: np.ndarray, day: int, max_gap: float) -> int:
    """Index of the S1 day nearest to ``day`` (the earlier on a tie), -1 beyond ``max_gap``."""
    best, best_gap = -1, math.inf
    for index, s1_day in enumerate(s1_days):
        gap = abs(int(s1_day) - day)
        if gap < best_gap:
            best, best_gap = index, gap
    return best if best_gap <= max_gap else -1


# --------------------------------------------------------------------------------------
# Sampling: the S1 crop's date and the batch keys.


@pytest.mark.parametrize("image_date", ["random_clear", "median"])
def test_s1_crop_is_taken_at_the_nearest_date(image_date):
    patches = make_patches(4, seed=1, size=16, min_dates=8, max_dates=12, s1=True)
    max_gap = 6
    sampler = PairSampler(
        patches,
        pixels_per_patch=4,
        crop_size=5,
        image_bands=("B4", "B3", "B2"),
        max_dates=16,
        image_date=image_date,
        views=("s1_image", "s2_image"),
        s1_max_gap_days=max_gap,
    )
    for patch_number, patch in enumerate(sampler.patches):
        rng = np.random.default_rng(patch_number)
        pairs = sampler._pairs(np.random.default_rng(patch_number), patch_number, 6)
        # The sampler's draws, repeated: the pixels, then (random_clear) the S2 dates.
        pixels = sample_pixels(rng, patch.height, patch.width, 6, "uniform")
        if image_date == "median":
            s2_days = np.full(6, np.sort(patch.dates)[(patch.num_dates - 1) // 2])
        else:
            date = choose_image_dates(
                rng, patch, 6, "random_clear", scores=sampler._date_scores(patch_number)
            )
            s2_days = patch.dates[date]
        rows, cols = crop_indices(pixels, 5, patch.height, patch.width)
        for n in range(6):
            t1 = _nearest_reference(patch.s1_dates, int(s2_days[n]), max_gap)
            assert t1 >= 0  # dates without S1 near them are never drawn
            expected = patch.s1_bands[t1][rows[n], cols[n]]
            np.testing.assert_array_equal(pairs["s1_image"][n], expected)
    assert set(pairs) == {"image", "s1_image"}


def test_s1_image_dates_match_a_reference_and_drop_beyond_the_gap():
    rng = np.random.default_rng(0)
    s1_days = np.sort(rng.choice(np.arange(0, 300), size=25, replace=False)).astype(np.int32)
    s2_days = rng.integers(-40, 340, size=200)
    patch = make_patches(1, seed=0, size=4, min_dates=3, max_dates=3, s1=True)[0]
    patch = Patch(
        patch.bands,
        patch.dates,
        patch.band_names,
        patch.labels,
        patch.patch_id,
        patch.fold,
        s1_bands=np.zeros((25, 4, 4, 3), np.float32),
        s1_dates=s1_days,
        s1_band_names=patch.s1_band_names,
    )
    for max_gap in (3, 10):
        got = s1_image_dates(patch, s2_days, max_gap)
        expected = [_nearest_reference(s1_days, int(d), max_gap) for d in s2_days]
        np.testing.assert_array_equal(got, expected)
        assert (got == -1).any() and (got >= 0).any()


def test_patches_beyond_the_gap_or_without_s1_are_left_out_and_counted():
    patches = make_patches(3, seed=2, size=8, min_dates=6, max_dates=8, s1=True)
    far = patches[0]
    # Patch 0's S1 series is moved a year away; patch 1 loses its S1 series.
    patches[0] = Patch(
        far.bands,
        far.dates,
        far.band_names,
        far.labels,
        far.patch_id,
        far.fold,
        s1_bands=far.s1_bands,
        s1_dates=far.s1_dates + 365,
        s1_band_names=far.s1_band_names,
    )
    p1 = patches[1]
    patches[1] = Patch(p1.bands, p1.dates, p1.band_names, p1.labels, p1.patch_id, p1.fold)
    sampler = PairSampler(
        patches, crop_size=3, max_dates=8, views=("s2_rp", "s1_image"), s1_max_gap_days=20
    )
    assert (sampler.num_without_s1, sampler.num_beyond_gap) == (1, 1)
    assert [p.patch_id for p in sampler.patches] == [patches[2].patch_id]
    # The S1 plot view needs no date match: only the patch without S1 is left out.
    plots = PairSampler(patches, crop_size=3, max_dates=8, views=("s1_rp", "s2_image"))
    assert (plots.num_without_s1, plots.num_beyond_gap) == (1, 0)
    batch = plots.sample_batch(8, np.random.default_rng(0))
    assert set(batch) == {"s1_bands", "s1_dates", "s1_mask", "image"}
    assert batch["s1_bands"].shape == (8, 8, 3) and batch["s1_mask"].dtype == bool
    with pytest.raises(ValueError, match="none of the 2 patches"):
        PairSampler(
            patches[:2],
            crop_size=3,
            max_dates=8,
            views=("s1_image", "s2_image"),
            s1_max_gap_days=20,
        )


def test_default_views_give_the_same_batches_and_spec():
    patches = make_patches(3, seed=0, size=12, min_dates=6, max_dates=8)
    kwargs = dict(crop_size=4, max_dates=8, image_date="random_clear")
    before = PairSampler(patches, **kwargs).sample_batch(8, np.random.default_rng(5))
    radar = make_patches(3, seed=0, size=12, min_dates=6, max_dates=8, s1=True)
    after = PairSampler(radar, views=("s2_rp", "s2_image"), **kwargs).sample_batch(
        8, np.random.default_rng(5)
    )
    assert list(after) == ["bands", "dates", "mask", "image"]
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    # A spec saved before the views existed loads as the paper's pair.
    saved = ModelSpec().to_dict()
    for key in ("views", "s1_band_names", "s1_indices", "s1_image_bands"):
        saved.pop(key)
    saved.pop("s1_image_mean"), saved.pop("s1_image_std")
    assert ModelSpec.from_dict(saved) == ModelSpec()
    assert ModelSpec.from_dict(saved).views == ("s2_rp", "s2_image")


@pytest.mark.parametrize("views", PAIRINGS, ids=IDS)
def test_build_pretraining_feeds_each_view(views):
    config = tiny_pretrain_config(**{"data.s1": "both", "model.views": views})
    setup = build_pretraining(config)
    spec = setup.spec
    assert spec.views == views
    batch = setup.sampler.sample_batch(BATCH, np.random.default_rng(0))
    assert set(batch) == {key for view in views for key in VIEW_KEYS[view]}
    params = init_params(spec, 0)
    for view in views:
        x = view_inputs(spec, view, batch)
        assert x.shape == (BATCH, *spec.view_input_shape(view))
        assert bool(np.all(np.isfinite(np.asarray(x))))
    if "s1_rp" in views:
        assert spec.s1_indices == ("vv", "vh", "ratio", "cross_ratio", "rvi")
    if "s1_image" in views:
        assert spec.s1_image_bands == ("VV", "VH", "VV/VH")
        # Standardised with the dB statistics of the S1 patches.
        values = np.concatenate([p.s1_bands.reshape(-1, 3) for p in setup.sampler.patches])
        np.testing.assert_allclose(spec.s1_image_mean, values.mean(0), rtol=1e-4)
        np.testing.assert_allclose(spec.s1_image_std, values.std(0), rtol=1e-3)
    # The parameter tree keeps the default pair's names whatever the views.
    assert set(params.variables["params"]) >= {
        "rp_encoder",
        "image_encoder",
        "rp_head",
        "image_head",
    }


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"model.views": ("s1_image", "s2_image")}, "config.data.s1='none'"),
        ({"model.views": ("s2_rp", "s2_rp")}, "two different views"),
        ({"model.views": ("s2_rp", "s3_image")}, "unknown view"),
        ({"data.s1": "both", "data.s1_max_gap_days": -1}, "s1_max_gap_days"),
    ],
)
def test_bad_view_configs_are_one_line_errors(overrides, match):
    config = tiny_pretrain_config(**overrides)
    with pytest.raises(ValueError, match=match) as error:
        validate_pretrain_config(config)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------------------
# From the command line: synthetic default and a 3-patch PASTIS-R directory.


@pytest.mark.slow  # each pairing also pre-trains from the CLI on PASTIS-R below
@pytest.mark.parametrize("views", PAIRINGS, ids=IDS)
def test_each_pairing_pretrains_on_synthetic_from_the_cli(views, tmp_path):
    launch_ok(
        "pretrain:tiny",
        tmp_path,
        "--config.data.s1=both",
        _views_flag(views),
        f"--config.total_steps={STEPS}",
    )
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert metrics[0]["loss"] == pytest.approx(math.log(BATCH), abs=0.5)
    meta = read_meta(tmp_path)
    assert meta["step"] == STEPS and tuple(meta["spec"]["views"]) == views


def test_s1s2_config_is_jain_et_al_pairing():
    from tiny_configs import load_config

    config = load_config("pretrain_s1s2:tiny")
    assert tuple(config.model.views) == ("s1_image", "s2_image")
    assert config.data.s1 == "both"
    validate_pretrain_config(config)


@pytest.fixture(scope="module")
def pastis_r(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pastis_r")
    write_pastis_dir(path, num_patches=3, size=16, s1=True)
    return path


@pytest.fixture(scope="module")
def pastis_r_pretrained(pastis_r, tmp_path_factory):
    """``get(views)``: the workdir of that pairing pre-trained for 2 steps on the PASTIS-R
    directory from the CLI (trained on first use, so deselected pairings cost nothing)."""
    workdirs: dict[tuple[str, str], Path] = {}

    def get(views: tuple[str, str]) -> Path:
        if views not in workdirs:
            workdir = tmp_path_factory.mktemp("pretrain_" + "_".join(views))
            launch_ok(
                "pretrain:tiny",
                workdir,
                "--config.data.name=pastis",
                f"--config.data.path={pastis_r}",
                "--config.data.s1=both",
                # The fixture's S1 series cover the season's first weeks only.
                "--config.data.s1_max_gap_days=400",
                "--config.model.indices=('ndvi','evi','savi')",
                _views_flag(views),
                f"--config.total_steps={STEPS}",
                f"--config.global_batch_size={BATCH}",
            )
            workdirs[views] = workdir
        return workdirs[views]

    return get


def _pastis_eval(task: str, pastis_r: Path, init_from: Path, workdir: Path, *flags: str):
    return launch(
        task,
        workdir,
        "--config.data.name=pastis",
        f"--config.data.path={pastis_r}",
        "--config.data.s1=both",
        f"--config.init_from={init_from}",
        "--config.data.max_dates=16",
        "--config.data.pixels_per_patch=24",
        *PASTIS_FOLDS,
        *flags,
    )


# The S1 plot tower and the S1 image tower in the default run; the other two pairings
# (no plot tower, the default S2 pair) are covered in the slow run.
_DEFAULT_RUN_PAIRINGS = (("s1_rp", "s2_image"), ("s2_rp", "s1_image"))


@pytest.mark.parametrize(
    "views",
    [
        pytest.param(v, id=i, marks=() if v in _DEFAULT_RUN_PAIRINGS else pytest.mark.slow)
        for v, i in zip(PAIRINGS, IDS, strict=True)
    ],
)
def test_pastis_r_pretrains_and_the_pixel_evaluations_run(
    views, pastis_r, pastis_r_pretrained, tmp_path
):
    workdir = pastis_r_pretrained(views)
    metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
    assert len(metrics) == STEPS and all(math.isfinite(m["loss"]) for m in metrics)
    plot_views = [view for view in views if view.endswith("_rp")]
    done = _pastis_eval(
        "eval_pastis_classification", pastis_r, workdir, tmp_path / "classify", *LINEAR
    )
    if not plot_views:  # Jain et al.'s pairing holds no plot encoder
        assert done.returncode != 0 and "recurrence-plot tower" in done.stderr
    else:
        assert done.returncode == 0, done.stderr[-3000:]
        results = json.loads((tmp_path / "classify" / "results.json").read_text())
        assert results["tower"]["view"] == plot_views[0]
        assert results["data"]["num_test"] == 24
        assert 0.0 <= results["metrics"]["overall_accuracy"] <= 1.0
    done = _pastis_eval(
        "eval_pastis_forecast",
        pastis_r,
        workdir,
        tmp_path / "forecast",
        *FORECAST,
        "--config.protocol=linear",
        "--config.linear.l2_grid=(0.001, 0.1)",
    )
    if "s2_rp" in views:
        assert done.returncode == 0, done.stderr[-3000:]
        results = json.loads((tmp_path / "forecast" / "results.json").read_text())
        assert math.isfinite(results["metrics"]["rmse_mean"])
    else:  # the forecast windows are Sentinel-2 series
        assert done.returncode != 0 and "s2_rp" in done.stderr


def test_pixel_classification_scores_the_s1_plot_encoder_against_random(pastis_r, tmp_path):
    """``init_from=random`` with ``model.views`` reading S1 builds an S1 plot encoder too."""
    results = launch_ok(
        "eval_pastis_classification:tiny",
        tmp_path,
        "--config.data.name=pastis",
        f"--config.data.path={pastis_r}",
        "--config.data.s1=both",
        "--config.model.views=('s1_rp','s2_image')",
        "--config.data.pixels_per_patch=24",
        *PASTIS_FOLDS,
        *LINEAR,
    )
    assert results["tower"] == {
        "name": "rp",
        "view": "s1_rp",
        "views": ["s1_rp", "s2_image"],
    }


def test_radar_plots_match_a_numpy_reference():
    """``s1_rp`` plots: radar series of each pixel (channels named by the spec), resampled
    over its valid dates (``np.interp``), then ``|x_i − x_j|``, ``x_j − x_i`` and
    ``(x_i + x_j) / 2``."""
    rng = np.random.default_rng(3)
    n, t, size = 3, 9, 6
    vv = rng.uniform(-18, -6, (n, t))
    vh = vv - rng.uniform(4, 10, (n, t))
    s1 = np.stack([vv, vh, vv - vh], axis=-1).astype(np.float32)
    s1[0, 2, 1] = np.nan  # VH missing: that date is not counted
    dates = np.sort(rng.choice(np.arange(200), (n, t), replace=False), axis=1).astype(np.float32)
    mask = np.ones((n, t), bool)
    mask[1, -2:] = False  # padding
    # Channels in another order than S1_BAND_NAMES, days as integers, a uint8 mask of 0/128.
    order = [1, 2, 0]
    spec = ModelSpec(
        views=("s1_rp", "s2_image"),
        s1_band_names=tuple(np.array(["VV", "VH", "VV/VH"])[order]),
        s1_indices=("vh", "rvi"),
        rp_size=size,
        rp_channels=("distance", "difference", "level"),
    )
    batch = {
        "s1_bands": s1[..., order],
        "s1_dates": dates.astype(np.int32),
        "s1_mask": mask.astype(np.uint8) * 128,
    }
    got = np.asarray(view_inputs(spec, "s1_rp", batch))
    assert got.shape == (n, size, size, 6)
    for i in range(n):
        ok = mask[i] & np.isfinite(s1[i]).all(-1)
        lin_vv, lin_vh = 10 ** (s1[i, :, 0] / 10.0), 10 ** (s1[i, :, 1] / 10.0)
        series = {"vh": s1[i, :, 1], "rvi": 4 * lin_vh / (lin_vv + lin_vh)}
        steps = np.linspace(dates[i][ok][0], dates[i][ok][-1], size)
        for k, name in enumerate(("vh", "rvi")):
            x = np.interp(steps, dates[i][ok], series[name][ok])
            np.testing.assert_allclose(got[i, ..., k], np.abs(x[:, None] - x[None]), atol=2e-4)
            np.testing.assert_allclose(got[i, ..., 2 + k], x[None] - x[:, None], atol=2e-4)
            np.testing.assert_allclose(got[i, ..., 4 + k], (x[:, None] + x[None]) / 2, atol=2e-4)
