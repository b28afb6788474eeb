"""Per-pixel heads over dense tower features: a frozen-encoder probe and fine-tuning.

Both segmentation evaluations (:mod:`.floods`, :mod:`.landcover`) end in the same head: a
linear map from a pixel's dense features to class logits.

* ``protocol=linear`` (:func:`fit_heads`): the features are standardised on the sampled
  training pixels and one multinomial logistic regression is fitted per L2 value of the
  grid (:func:`pimc_jax.evaluation.probes.fit_logistic_regression`); the evaluation keeps
  the head that scores best on its validation split.
* ``protocol=finetune`` (:func:`finetune_view`): the tower reading the view and a linear
  head are trained together on the ``crop_size`` crops centred on the sampled training
  pixels (the crops pre-training saw; the dense pass computes each pixel's crop, exactly
  for a ``padding="valid"`` tower), with the ``finetune`` block's settings
  (:func:`pimc_jax.evaluation.finetune.train_supervised`), keeping the best validation
  step; the trained head is applied to the fine-tuned tower's dense features.

:class:`PixelHeads` holds ``G`` candidate heads and scores features with all of them at
once; :func:`confusions` counts their predictions against labels; :func:`check_settings`
gives both tasks the same one-line errors for ``data.name``, ``tower`` and ``protocol``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import chex
import ml_collections
import numpy as np

from pimc_jax.data.views import VIEW_KEYS, extract_crops
from pimc_jax.evaluation.finetune import finetune_settings, train_supervised
from pimc_jax.evaluation.probes import fit_logistic_regression
from pimc_jax.evaluation.towers import tower_forward, tower_params
from pimc_jax.models import PIMCParams
from pimc_jax.segmentation.dense import IMAGE_VIEWS, view_encoder

_TOWER_OF_ENCODER = {"rp_encoder": "rp", "image_encoder": "image"}
# What a segmentation evaluation's ``tower`` may name: one image view, or both.
SEGMENTATION_TOWERS: tuple[str, ...] = (*IMAGE_VIEWS, "both")


def check_settings(config: ml_collections.ConfigDict, sources: Sequence[str]) -> None:
    """One-line errors for a segmentation config's ``data.name``, ``tower`` and protocol.

    Raises:
      ValueError: ``data.name`` not in ``sources``, an unknown ``tower``, or
        ``protocol=finetune`` with ``tower=both`` (fine-tuning trains one tower).
    """
    task = config.task
    if config.data.name not in sources:
        raise ValueError(
            f"data.name must be one of {tuple(sources)} for {task}, got {config.data.name!r}"
        )
    if config.tower not in SEGMENTATION_TOWERS:
        raise ValueError(f"tower must be one of {SEGMENTATION_TOWERS}, got {config.tower!r}")
    if config.protocol == "finetune" and config.tower == "both":
        raise ValueError(
            f"{task}: protocol='finetune' trains one tower: set --config.tower=s1_image or s2_image"
        )


@dataclasses.dataclass(frozen=True)
class PixelHeads:
    """``G`` linear heads on ``F`` features: ``logits = ((x − mean) / std) @ W + b``.

    Attributes:
      mean, std: ``(F,)`` float64 standardisation (0 and 1 for a fine-tuned head).
      weights: ``(G, F, K)`` float32.
      biases: ``(G, K)`` float32.
      l2: ``G`` L2 values of the fits (empty for a fine-tuned head).
    """

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    biases: np.ndarray
    l2: tuple[float, ...] = ()

    @property
    def num_heads(self) -> int:
        return int(self.weights.shape[0])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``(G, N, K)`` float32 logits of ``(N, F)`` features (non-finite inputs → 0 after
        standardisation)."""
        chex.assert_rank(features, 2)
        x = np.nan_to_num((np.asarray(features, np.float64) - self.mean) / self.std)
        return np.einsum("nf,gfk->gnk", x.astype(np.float32), self.weights) + self.biases[:, None]


def fit_heads(
    features: np.ndarray, labels: np.ndarray, num_classes: int, l2_grid: Sequence[float], steps: int
) -> PixelHeads:
    """One standardised logistic-regression head per value of ``l2_grid``.

    Args:
      features: ``(N, F)`` float training features (non-finite values count as 0).
      labels: ``(N,)`` int in ``[0, num_classes)``.
      l2_grid: the L2 values, at least one.
      steps: L-BFGS iterations per fit.
    """
    if not tuple(l2_grid):
        raise ValueError("linear.l2_grid must hold at least one value")
    x = np.asarray(features, np.float64).copy()
    x[~np.isfinite(x)] = 0.0
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    standard = ((x - mean) / std).astype(np.float32)
    fits = [
        fit_logistic_regression(standard, labels, num_classes, l2=float(l2), steps=steps)
        for l2 in l2_grid
    ]
    return PixelHeads(
        mean=mean,
        std=std,
        weights=np.stack([w for w, _ in fits]).astype(np.float32),
        biases=np.stack([b for _, b in fits]).astype(np.float32),
        l2=tuple(float(v) for v in l2_grid),
    )


def confusions(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(G, K, K)`` int64 confusion matrices (row = true class) of each head's argmax.

    Args:
      logits: ``(G, N, K)``.
      labels: ``(N,)`` int in ``[0, num_classes)``.
    """
    chex.assert_rank(logits, 3)
    labels = np.asarray(labels, np.int64)
    predictions = np.argmax(logits, axis=-1)
    cells = labels[None] * num_classes + predictions
    return np.stack(
        [np.bincount(row, minlength=num_classes**2) for row in cells.reshape(len(logits), -1)]
    ).reshape(len(logits), num_classes, num_classes)


def sample_pixels(
    rng: np.random.Generator, eligible: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` ``(rows, cols)`` drawn without replacement where ``eligible`` (H, W)."""
    flat = np.flatnonzero(np.asarray(eligible).ravel())
    take = np.sort(rng.choice(flat, min(flat.size, int(count)), replace=False))
    return np.divmod(take, np.asarray(eligible).shape[1])


def view_crops(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """``(N, size, size, C)`` float32 crops of a view's raw ``(H, W, C)`` image around pixels."""
    centers = np.stack([rows, cols], axis=1).astype(np.int64)
    return extract_crops(np.asarray(image, np.float32), centers, size)


def finetune_view(
    params: PIMCParams,
    view: str,
    crops: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    config: ml_collections.ConfigDict,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[PIMCParams, PixelHeads]:
    """Fine-tunes the tower reading ``view`` and a linear head on labelled crops.

    Args:
      params: the encoder (only the tower reading ``view`` moves).
      view: ``s2_image`` or ``s1_image``.
      crops: ``(N, k, k, C)`` raw crops of the view (:func:`view_crops`).
      labels: ``(N,)`` int class of each crop's centre pixel.
      num_classes: ``K``.
      config: the evaluation config (its ``finetune`` block and ``seed``).
      validation: ``(crops, labels)`` of validation pixels to keep the best step on
        (accuracy); None or empty keeps the last step's average.

    Returns:
      The fine-tuned encoder and its head as one :class:`PixelHeads` (``G = 1``).
    """
    chex.assert_rank(crops, 4)
    tower = _TOWER_OF_ENCODER[view_encoder(params.spec, view)]
    key = VIEW_KEYS[view][0]
    forward = tower_forward(params.spec, tower)
    settings = finetune_settings(config)
    kwargs: dict[str, Any] = {}
    if validation is not None and len(validation[1]):
        kwargs = dict(
            validation=({key: validation[0]}, np.asarray(validation[1], np.int32)),
            score_fn=lambda outputs, targets: float(np.mean(outputs.argmax(-1) == targets)),
        )
    else:
        settings["eval_every_steps"] = 0
    trained = train_supervised(
        forward,
        tower_params(params, tower, num_classes),
        {key: np.asarray(crops, np.float32)},
        np.asarray(labels, np.int32),
        loss="cross_entropy",
        tower=tower,
        name=f"finetune {view}",
        **settings,
        **kwargs,
    )
    tuned = PIMCParams(variables=trained["model"], spec=params.spec)
    width = int(trained["head"]["kernel"].shape[0])
    heads = PixelHeads(
        mean=np.zeros(width),
        std=np.ones(width),
        weights=np.asarray(trained["head"]["kernel"], np.float32)[None],
        biases=np.asarray(trained["head"]["bias"], np.float32)[None],
    )
    return tuned, heads
