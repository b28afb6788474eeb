"""The pixel classifier's tree models (``finetune.trees``), against scikit-learn and LightGBM
fitted here on the same pixels."""

from __future__ import annotations

import itertools

import lightgbm
import numpy as np
import pytest
from format_writers import write_user_npz
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from tiny_configs import load_config

from pimc_jax.evaluation import classification
from pimc_jax.evaluation.pixel_classification import PixelClassification
from pimc_jax.evaluation.pixels import series_inputs
from pimc_jax.evaluation.trees import (
    blend_weights,
    parse_trees,
    series_table,
    tree_out_of_fold,
    tree_probabilities,
)


def test_parse_trees():
    assert parse_trees("forest+lgbm") == ("forest", "lgbm")
    assert parse_trees(" lgbm ") == ("lgbm",)
    assert parse_trees("none") == parse_trees("") == ()
    assert parse_trees("auto", 99) == ("forest",)
    assert parse_trees("auto", 100) == parse_trees("auto") == ("forest", "lgbm")
    assert parse_trees("extra_trees+lgbm") == ("extra_trees", "lgbm")
    for bad in ("forest+xgb", "rf", 3):
        with pytest.raises(ValueError, match="finetune.trees"):
            parse_trees(bad)


def test_series_table_masks_padding_and_keeps_gaps():
    bands = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    bands[0, 1, 0] = np.nan
    mask = np.array([[True, True, False], [True, True, True]])
    table = series_table(bands, mask)
    assert table.shape == (2, 6)
    expected = bands.astype(np.float64).reshape(2, 6)
    expected[0, 4:] = np.nan  # padded date of row 0
    np.testing.assert_array_equal(table, expected)


def test_tree_probabilities_match_the_libraries():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(60, 5))
    labels = (train[:, 0] > 0).astype(int) + 2 * (train[:, 1] > 1)  # classes 0, 1, 2, 3
    train[rng.random(train.shape) < 0.1] = np.nan
    test = rng.normal(size=(20, 5))
    forest, boosted, extra = tree_probabilities(
        ("forest", "lgbm", "extra_trees"), train, labels, test, 5, seed=3
    )
    assert forest.shape == boosted.shape == (20, 5)
    np.testing.assert_allclose(forest.sum(1), 1.0)
    assert np.all(forest[:, 4] == 0) and np.all(boosted[:, 4] == 0)  # class 4 never seen

    mean = np.nanmean(train, axis=0)
    reference = RandomForestClassifier(n_estimators=300, random_state=3, n_jobs=-1)
    reference.fit(np.where(np.isnan(train), mean, train), labels)
    np.testing.assert_allclose(forest[:, :4], reference.predict_proba(test), atol=1e-12)
    reference = ExtraTreesClassifier(n_estimators=300, random_state=3, n_jobs=-1)
    reference.fit(np.where(np.isnan(train), mean, train), labels)
    np.testing.assert_allclose(extra[:, :4], reference.predict_proba(test), atol=1e-12)
    assert np.all(extra[:, 4] == 0) and np.abs(extra - forest).max() > 0.05
    gbm = lightgbm.LGBMClassifier(
        n_estimators=300,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=5,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.5,
        random_state=3,
        verbose=-1,
    ).fit(train, labels)
    np.testing.assert_allclose(boosted[:, :4], gbm.predict_proba(test), atol=1e-12)


def test_classify_averages_the_tower_with_the_trees(tmp_path, monkeypatch):
    write_user_npz(tmp_path / "pixels.npz", num_pixels=60, num_dates=8, num_classes=3)
    config = load_config("eval_pastis_classification:tiny")
    config.init_from, config.protocol = "random", "finetune"
    config.data.update(dict(name="npz", path=str(tmp_path / "pixels.npz")))
    evaluator = PixelClassification(config)
    params, s = evaluator.random_params(), evaluator.splits
    splits = (s.train, s.val, s.test)

    def run(trees: str) -> dict:
        config.finetune.trees = trees
        return classification.classify(
            config,
            params,
            "rp",
            splits,
            s.num_classes,
            features_fn=None,
            inputs_fn=series_inputs,
            band_names=s.band_names,
        )

    tower_only = run("none")
    both = run("forest")
    fit = np.concatenate([s.train["bands"], s.val["bands"]])
    fit_mask = np.concatenate([s.train["mask"], s.val["mask"]])
    fit_labels = np.concatenate([s.train["labels"], s.val["labels"]])
    features = np.where(fit_mask[..., None], fit, np.nan).reshape(len(fit), -1)
    test = np.where(s.test["mask"][..., None], s.test["bands"], np.nan).reshape(
        len(s.test["bands"]), -1
    )
    mean = np.nanmean(features, axis=0)
    forest = RandomForestClassifier(n_estimators=300, random_state=config.seed, n_jobs=-1)
    forest.fit(np.where(np.isnan(features), mean, features), fit_labels)
    forest_p = np.zeros((len(test), s.num_classes))
    forest_p[:, forest.classes_] = forest.predict_proba(np.where(np.isnan(test), mean, test))
    expected = (tower_only["test_probabilities"] + forest_p) / 2
    np.testing.assert_allclose(both["test_probabilities"], expected, atol=1e-6)
    np.testing.assert_array_equal(both["test_predictions"], expected.argmax(-1))


def _random_probabilities(rng, members, pixels, classes):
    p = rng.random((members, pixels, classes)) ** 3
    return p / p.sum(-1, keepdims=True)


def test_blend_weights_is_the_best_grid_point_by_brute_force():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 50)
    members = _random_probabilities(rng, 3, 50, 4)
    best, best_ll = None, -np.inf
    for a, b in itertools.product(range(11), repeat=2):  # weights in tenths
        if a + b > 10:
            continue
        w = np.array([a, b, 10 - a - b]) / 10
        mixed = np.einsum("m,mnk->nk", w, members)
        ll = np.mean(np.log(np.maximum(mixed[np.arange(50), labels], 1e-6)))
        if ll > best_ll + 1e-12:
            best, best_ll = w, ll
    np.testing.assert_allclose(blend_weights(list(members), labels), best)

    # A member that is always sure and right takes all the weight; identical members tie,
    # and ties go to equal weights.
    sure = np.eye(4)[labels]
    np.testing.assert_allclose(blend_weights([members[0], sure], labels), [0.0, 1.0])
    np.testing.assert_allclose(blend_weights([members[0]] * 2, labels, step=0.5), [0.5, 0.5])
    with pytest.raises(ValueError, match="step"):
        blend_weights([members[0]], labels, step=0.3)
    with pytest.raises(ValueError, match="labels"):
        blend_weights([members[0]], labels[:10])


def test_tree_out_of_fold_predicts_each_part_from_the_others():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(40, 3))
    labels = (features[:, 0] > 0).astype(int)
    parts = [np.arange(0, 40, 2), np.arange(1, 40, 2)]
    (oof,) = tree_out_of_fold(("forest",), features, labels, parts, 3, seed=5)
    for part, other in (parts, parts[::-1]):
        forest = RandomForestClassifier(n_estimators=300, random_state=5, n_jobs=-1)
        forest.fit(features[other], labels[other])
        np.testing.assert_allclose(oof[part, :2], forest.predict_proba(features[part]))
    assert np.all(oof[:, 2] == 0)


def test_classify_blends_on_out_of_fold_predictions(tmp_path):
    write_user_npz(tmp_path / "pixels.npz", num_pixels=60, num_dates=8, num_classes=3)
    config = load_config("eval_pastis_classification:tiny")
    config.init_from, config.protocol = "random", "finetune"
    config.data.update(dict(name="npz", path=str(tmp_path / "pixels.npz")))
    config.finetune.update(dict(trees="forest", blend="oof", prior_correction="none"))
    evaluator = PixelClassification(config)
    params, s = evaluator.random_params(), evaluator.splits
    kwargs = dict(features_fn=None, inputs_fn=series_inputs, band_names=s.band_names)
    splits = (s.train, s.val, s.test)
    with pytest.raises(ValueError, match="ensemble_members"):
        classification.classify(config, params, "rp", splits, s.num_classes, **kwargs)

    config.finetune.ensemble_members = 2
    out = classification.classify(config, params, "rp", splits, s.num_classes, **kwargs)
    pool_labels = np.concatenate([s.train["labels"], s.val["labels"]])
    np.testing.assert_array_equal(out["oof_labels"], pool_labels)
    tower_oof, forest_oof = out["oof_probabilities"], out["tree_oof_probabilities"]["forest"]
    np.testing.assert_allclose(tower_oof.sum(-1), 1.0, atol=1e-5)  # every pool pixel predicted
    features = series_table(
        np.concatenate([s.train["bands"], s.val["bands"]]),
        np.concatenate([s.train["mask"], s.val["mask"]]),
    )
    (expected_oof,) = tree_out_of_fold(
        ("forest",), features, pool_labels, out["oof_parts"], s.num_classes, config.seed
    )
    np.testing.assert_allclose(forest_oof, expected_oof)
    weights = blend_weights([tower_oof, forest_oof], pool_labels)
    assert out["blend_weights"] == dict(zip(("tower", "forest"), weights.tolist(), strict=True))
    expected = (
        weights[0] * out["tower_test_probabilities"]
        + weights[1] * out["tree_test_probabilities"]["forest"]
    )
    np.testing.assert_allclose(out["test_probabilities"], expected, atol=1e-12)
