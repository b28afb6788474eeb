"""Pixel classification with the recurrence-plot (RP) encoder (``eval_pastis_classification``).

The encoder's first plot tower is scored: the ``s2_rp`` view's, or the ``s1_rp`` view's
for a checkpoint pre-trained on Sentinel-1 plots (``data.s1`` must then load S1); the
results name it (``tower``).

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
from pimc_jax.evaluation.towers import plot_tower
from pimc_jax.models import PIMCParams


class PixelClassification:
    """The ``eval_pastis_classification`` evaluator: loads the pixels once, runs per encoder."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.splits = load_pixel_splits(config)

    def random_params(self) -> PIMCParams:
        s = self.splits
        return random_encoder(
            self.config,
            s.band_names,
            s.image_mean,
            s.image_std,
            series_length=s.series_length(),
            **s.s1_facts,
        )

    def run(self, params: PIMCParams) -> dict[str, Any]:
        s = self.splits
        splits = (s.train, s.val, s.test)
        tower = plot_tower(params.spec)
        view = params.spec.tower_view(tower)
        if view == "s1_rp" and "s1_bands" not in s.train:
            raise ValueError(
                f"the encoder's plot tower reads s1_rp, but config.data.s1="
                f"{self.config.data.get('s1', 'none')!r} loads no Sentinel-1 series"
            )
        outputs = classify(
            self.config,
            params,
            tower,
            splits,
            s.num_classes,
            features_fn=lambda split: series_features(params, split, s.band_names, tower),
            inputs_fn=series_inputs,
            band_names=s.band_names,
        )
        results = classification_results(outputs, splits, s.class_names)
        if "blend_weights" in outputs:  # finetune.trees: how much each model counted
            results["blend_weights"] = outputs["blend_weights"]
        if "prior_exponent" in outputs:  # finetune.prior_correction: how far it moved
            results["prior_exponent"] = outputs["prior_exponent"]
        results["data"] = {"name": self.config.data.name, **s.sizes()}
        results["tower"] = {"name": tower, "view": view, "views": list(params.spec.views)}
        return results
