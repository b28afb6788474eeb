"""Land-cover image classification with the image encoder (``eval_eurosat``).

Data (``data.name``):

* ``synthetic`` (default): :func:`pimc_jax.data.synthetic.make_image_classification_set`,
  ``data.num_train + data.num_val + data.num_test`` scenes of ``data.image_size`` pixels
  (seed ``data.eval_seed``), split in that order; generated with exactly the bands the
  encoder needs.
* ``eurosat``: :func:`pimc_jax.data.eurosat.load_eurosat` on the archives in ``data.path``
  (``data.eurosat_variant`` ``rgb`` or ``all``), splits ``train`` / ``validation`` /
  ``test``; the encoder's bands (``spec.image_bands``) are picked by name.

``data.max_train_examples > 0`` keeps a seeded stratified subset of the training split.
Whole images go through the encoder (it ends in global average pooling, so any size
works). ``data.image_normalization`` says which per-band mean/std standardise them:
``"checkpoint"``, the statistics the encoder was pre-trained with (right when the images
are reflectance like the pre-training data: the synthetic scenes, EuroSAT ``all`` divided
by 10 000); ``"train_split"``, those of the evaluation's training split (needed for
EuroSAT ``rgb``, 8-bit JPEG values divided by 255, which are not reflectance); ``"auto"``
(default) picks ``train_split`` for EuroSAT ``rgb`` and ``checkpoint`` otherwise. A random
encoder has no pre-training statistics and always uses the training split's. Metrics as
in pixel classification: test overall (top-1) accuracy, macro-F1, per-class table,
validation accuracy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from pimc_jax.data.splits import stratified_split
from pimc_jax.data.synthetic import make_image_classification_set
from pimc_jax.evaluation.classification import classification_results, classify
from pimc_jax.evaluation.encoders import random_encoder
from pimc_jax.evaluation.towers import frozen_features
from pimc_jax.indices import BAND_TABLES, canonical_band_name, resolve_image_bands
from pimc_jax.models import PIMCParams

IMAGE_SOURCES: tuple[str, ...] = ("synthetic", "eurosat")
NORMALIZATIONS: tuple[str, ...] = ("auto", "train_split", "checkpoint")


def select_bands(
    images: np.ndarray, band_names: Sequence[str], wanted: Sequence[str]
) -> np.ndarray:
    """``(N, H, W, C)`` images → ``(N, H, W, len(wanted))`` with the bands ``wanted`` by name.

    Names are compared canonically (``B02`` == ``B2``).
    """
    have = [canonical_band_name(name) for name in band_names]
    missing = [name for name in wanted if canonical_band_name(name) not in have]
    if missing:
        raise ValueError(
            f"image bands {missing} needed by the encoder are not among {tuple(band_names)}"
        )
    return images[..., [have.index(canonical_band_name(name)) for name in wanted]]


def band_mean_std(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and std (NaN ignored; zero std → 1) of ``(N, H, W, C)`` images."""
    values = np.asarray(images, np.float64).reshape(-1, images.shape[-1])
    mean = np.nanmean(values, axis=0)
    std = np.nanstd(values, axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


class ImageClassification:
    """The ``eval_eurosat`` evaluator: images per band set (cached), then per encoder."""

    def __init__(self, config: ml_collections.ConfigDict):
        data = config.data
        if data.name not in IMAGE_SOURCES:
            raise ValueError(
                f"data.name must be one of {IMAGE_SOURCES} for eval_eurosat, got {data.name!r}"
            )
        if data.image_normalization not in NORMALIZATIONS:
            raise ValueError(
                f"data.image_normalization must be one of {NORMALIZATIONS}, got "
                f"{data.image_normalization!r}"
            )
        self.config = config
        self._cache: dict[tuple[str, ...], list[dict[str, np.ndarray]]] = {}
        self.class_names: tuple[str, ...] = ()
        if data.name == "eurosat":
            self._eurosat = self._load_eurosat()

    def _load_eurosat(self) -> dict[str, Any]:
        # Lazy: the TFDS builder imports tensorflow_datasets, needed for EuroSAT only.
        from pimc_jax.data.eurosat import load_eurosat

        data = self.config.data
        if not data.get("path"):
            raise ValueError("data.name='eurosat' needs --config.data.path=DIR (the archives)")
        splits = {}
        for split in ("train", "validation", "test"):
            images, labels, class_names, band_names = load_eurosat(
                data.path, data.eurosat_variant, split
            )
            splits[split] = (images, labels)
        self.class_names = tuple(class_names)
        return {"splits": splits, "band_names": tuple(band_names)}

    def _subsample_train(self, split: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        limit = int(self.config.data.get("max_train_examples", 0))
        num = split["labels"].shape[0]
        if limit <= 0 or limit >= num:
            return split
        keep, _ = stratified_split(split["labels"], [limit / num], self.config.data.eval_seed)
        return {key: value[keep] for key, value in split.items()}

    def splits(self, bands: Sequence[str]) -> list[dict[str, np.ndarray]]:
        """Train, val and test dicts (``image`` ``(N, H, W, len(bands))``, ``labels``)."""
        bands = tuple(bands)
        if bands in self._cache:
            return self._cache[bands]
        data = self.config.data
        if data.name == "synthetic":
            sizes = (data.num_train, data.num_val, data.num_test)
            images, labels, class_names = make_image_classification_set(
                sum(sizes), seed=data.eval_seed, size=data.image_size, band_names=bands
            )
            self.class_names = tuple(class_names)
            bounds = np.cumsum((0, *sizes))
            parts = [
                {"image": images[a:b], "labels": labels[a:b]}
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            ]
        else:
            parts = [
                {
                    "image": select_bands(images, self._eurosat["band_names"], bands),
                    "labels": labels,
                }
                for images, labels in self._eurosat["splits"].values()
            ]
        parts[0] = self._subsample_train(parts[0])
        for name, part in zip(("train", "test"), (parts[0], parts[2]), strict=True):
            if part["labels"].shape[0] == 0:
                raise ValueError(f"the {name} split of data.name={data.name!r} holds no image")
        self._cache = {bands: parts}  # keep one band set in memory
        return parts

    def normalization(self) -> str:
        """``train_split`` or ``checkpoint``, resolving ``auto`` (module docstring)."""
        data = self.config.data
        if data.image_normalization != "auto":
            return data.image_normalization
        rgb = data.name == "eurosat" and data.eurosat_variant == "rgb"
        return "train_split" if rgb else "checkpoint"

    def random_params(self) -> PIMCParams:
        """Fresh parameters: config.model, ``data.image_bands``, train-split statistics."""

        bands = resolve_image_bands(self.config.data.image_bands, BAND_TABLES["eurosat"])
        mean, std = band_mean_std(self.splits(bands)[0]["image"])
        return random_encoder(self.config, BAND_TABLES["pastis"], mean, std)

    def run(self, params: PIMCParams) -> dict[str, Any]:
        config = self.config
        splits = self.splits(params.spec.image_bands)
        if self.normalization() == "train_split":
            mean, std = band_mean_std(splits[0]["image"])
            params = PIMCParams(
                variables=params.variables,
                spec=dataclasses.replace(params.spec, image_mean=mean, image_std=std),
            )
        outputs = classify(
            config,
            params,
            "image",
            splits,
            len(self.class_names),
            features_fn=lambda split: frozen_features(params, "image", {"image": split["image"]}),
            inputs_fn=lambda split: {"image": split["image"]},
        )
        results = classification_results(outputs, splits, self.class_names)
        results["data"] = {
            "name": config.data.name,
            **{
                f"num_{n}": int(s["labels"].shape[0])
                for n, s in zip(("train", "val", "test"), splits, strict=True)
            },
            "image_shape": list(splits[0]["image"].shape[1:]),
            "image_normalization": self.normalization(),
        }
        return results
