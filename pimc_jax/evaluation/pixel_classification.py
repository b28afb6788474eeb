"""Pixel classification with the recurrence-plot (RP) encoder (``eval_pastis_classification``).

The labelled pixels and their train / val / test splits: :mod:`pimc_jax.evaluation.pixels`.
Metrics on the test split: overall accuracy, macro-F1, per-class precision / recall / F1 /
support; plus the validation accuracy.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from pimc_jax.evaluation.classification import classification_results, classify
from pimc_jax.evaluation.encoders import random_encoder
from pimc_jax.evaluation.pixels import load_pixel_splits, series_features, series_inputs
from pimc_jax.models import PIMCParams


class PixelClassification:
    """The ``eval_pastis_classification`` evaluator: loads the pixels once, runs per encoder."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.splits = load_pixel_splits(config)

    def random_params(self) -> PIMCParams:
        s = self.splits
        return random_encoder(self.config, s.band_names, s.image_mean, s.image_std)

    def run(self, params: PIMCParams) -> dict[str, Any]:
        s = self.splits
        splits = (s.train, s.val, s.test)
        outputs = classify(
            self.config,
            params,
            "rp",
            splits,
            s.num_classes,
            features_fn=lambda split: series_features(params, split, s.band_names),
            inputs_fn=series_inputs,
            band_names=s.band_names,
        )
        results = classification_results(outputs, splits, s.class_names)
        results["data"] = {"name": self.config.data.name, **s.sizes()}
        return results
