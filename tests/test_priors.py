"""Class-prior correction (``finetune.prior_correction``), against NumPy and scikit-learn's
accuracy and macro-F1 worked out here."""

from __future__ import annotations

import numpy as np
import pytest
from format_writers import write_user_npz
from sklearn.metrics import accuracy_score, f1_score
from tiny_configs import load_config

from pimc_jax.evaluation import classification
from pimc_jax.evaluation.pixel_classification import PixelClassification
from pimc_jax.evaluation.pixels import series_inputs
from pimc_jax.evaluation.priors import (
    EXPONENTS,
    class_prior,
    correct_priors,
    prior_exponent,
)


def _brute_force_exponent(probabilities, labels, num_classes):
    """The smallest exponent of the grid with the best accuracy + macro-F1 (scikit-learn)."""
    counts = np.maximum(np.bincount(labels, minlength=num_classes), 1)
    prior = counts / counts.sum()
    scores = []
    for a in EXPONENTS:
        predictions = np.argmax(probabilities / prior**a, axis=1)
        scores.append(
            accuracy_score(labels, predictions) + f1_score(labels, predictions, average="macro")
        )
    return EXPONENTS[int(np.argmax(np.round(scores, 12)))]


def test_class_prior_and_correction_follow_the_formula():
    labels = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(class_prior(labels, 3), [3 / 5, 1 / 5, 1 / 5])  # absent: 1
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    prior = np.array([0.6, 0.2, 0.2])
    np.testing.assert_allclose(correct_priors(p, prior, 0.0), p)
    expected = p / prior**0.5
    np.testing.assert_allclose(
        correct_priors(p, prior, 0.5), expected / expected.sum(1, keepdims=True)
    )
    # a = 1: the balanced decision; the first row's majority vote flips to class 1.
    assert correct_priors(p, prior, 1.0).argmax(1).tolist() == [1, 2]
    with pytest.raises(ValueError, match="exponent -1"):
        correct_priors(p, prior, -1)
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        correct_priors(p, prior[:2], 0.5)
    with pytest.raises(ValueError, match="non-empty"):
        class_prior(np.zeros(0, int), 3)


def test_prior_exponent_is_the_best_grid_point_by_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(6):
        labels = rng.choice(4, size=200, p=[0.7, 0.15, 0.1, 0.05])
        # probabilities that lean to the majority class: the truth plus a prior-shaped bias
        logits = 2.0 * np.eye(4)[labels] + rng.normal(0, 1.0, (200, 4)) + [1.5, 0, 0, 0]
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        assert prior_exponent(p, labels, 4) == _brute_force_exponent(p, labels, 4), trial
    # biased towards the majority, the correction pays: some exponent above 0 is chosen
    assert prior_exponent(p, labels, 4) > 0


def test_prior_exponent_is_zero_with_balanced_labels():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 20)
    p = rng.dirichlet(np.ones(3), size=60)
    assert prior_exponent(p, labels, 3) == 0.0  # a uniform prior changes no decision
    with pytest.raises(ValueError, match=r"should be \(60, 4\)"):
        prior_exponent(p, labels, 4)


@pytest.fixture(scope="module")
def pixel_task(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prior")
    write_user_npz(folder / "pixels.npz", num_pixels=60, num_dates=8, num_classes=3)
    config = load_config("eval_pastis_classification:tiny")
    config.init_from, config.protocol = "random", "finetune"
    config.data.update(dict(name="npz", path=str(folder / "pixels.npz")))
    config.finetune.update(dict(trees="forest", ensemble_members=2))
    evaluator = PixelClassification(config)
    return config, evaluator.random_params(), evaluator.splits


def _inputs(s) -> dict:
    return dict(features_fn=None, inputs_fn=series_inputs, band_names=s.band_names)


def test_classify_corrects_the_blend_by_the_exponent_chosen_out_of_fold(pixel_task):
    config, params, s = pixel_task
    kwargs = _inputs(s)
    splits = (s.train, s.val, s.test)
    assert config.finetune.prior_correction == "auto"  # the default
    out = classification.classify(config, params, "rp", splits, s.num_classes, **kwargs)
    pool = np.concatenate([s.train["labels"], s.val["labels"]])
    blend_oof = (out["oof_probabilities"] + out["tree_oof_probabilities"]["forest"]) / 2
    np.testing.assert_allclose(out["blend_oof_probabilities"], blend_oof, atol=1e-12)
    exponent = _brute_force_exponent(blend_oof, pool, s.num_classes)
    assert out["prior_exponent"] == exponent
    blend = (out["tower_test_probabilities"] + out["tree_test_probabilities"]["forest"]) / 2
    prior = np.maximum(np.bincount(pool, minlength=s.num_classes), 1) / pool.size
    expected = blend / prior**exponent
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(out["test_probabilities"], expected, atol=1e-6)
    np.testing.assert_array_equal(out["test_predictions"], expected.argmax(1))

    config.finetune.prior_correction = "1"  # a given exponent: the balanced decision
    balanced = classification.classify(config, params, "rp", splits, s.num_classes, **kwargs)
    np.testing.assert_array_equal(balanced["test_predictions"], (blend / prior).argmax(1))
    config.finetune.prior_correction = "none"
    plain = classification.classify(config, params, "rp", splits, s.num_classes, **kwargs)
    np.testing.assert_allclose(plain["test_probabilities"], blend, atol=1e-6)
    assert "prior_exponent" not in plain
    config.finetune.prior_correction = "auto"


@pytest.mark.parametrize("value", ["balanced", "-0.5", "nan", "inf"])
def test_bad_prior_correction_is_one_line_with_the_choices(pixel_task, value):
    config, params, s = pixel_task
    config.finetune.prior_correction = value
    try:
        with pytest.raises(ValueError, match=r"^finetune\.prior_correction must be 'auto'"):
            splits = (s.train, s.val, s.test)
            classification.classify(config, params, "rp", splits, s.num_classes, **_inputs(s))
    finally:
        config.finetune.prior_correction = "auto"


def test_the_paper_variant_keeps_the_plain_argmax():
    assert load_config("eval_pastis_classification:paper").finetune.prior_correction == "none"
