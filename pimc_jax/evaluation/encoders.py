"""Which encoder an evaluation scores, and how: ``init_from`` and ``protocol``.

This is the one place these two keys of every evaluation config are defined.

* ``init_from`` (:func:`load_encoder`): a pre-training workdir (its latest checkpoint),
  its ``checkpoints`` directory, one ``checkpoints/<step>`` directory, or ``"random"``:
  fresh parameters with the spec pre-training would build from the config's ``model`` and
  ``data`` blocks (:func:`random_encoder`; the baseline row). Checkpoints restore onto any
  number of devices (they are stored replicated).
* ``protocol`` (:data:`PROTOCOLS`): ``"linear"``, a linear probe on the frozen backbone
  features (:mod:`pimc_jax.evaluation.probes`: standardised, logistic regression for
  classification, ridge for regression, L2 picked on the validation split), or
  ``"finetune"``, the tower's backbone plus a zero-initialised linear head trained with
  AdamW while the other tower and the projection heads stay frozen
  (:mod:`pimc_jax.evaluation.finetune`); for the classification tasks a cross-fitted
  ensemble of ``finetune.ensemble_members`` such models
  (:func:`pimc_jax.evaluation.classification.classify`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
from absl import logging

from pimc_jax.checkpoint import load_checkpoint
from pimc_jax.models import ModelSpec, PIMCParams, init_params

PROTOCOLS: tuple[str, ...] = ("linear", "finetune")
RANDOM_INIT = "random"


def check_protocol(protocol: str) -> None:
    """Raises ValueError unless ``protocol`` is one of :data:`PROTOCOLS`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"config.protocol must be one of {PROTOCOLS}, got {protocol!r}")


@dataclasses.dataclass(frozen=True)
class EncoderSource:
    """Where evaluated parameters came from.

    Attributes:
      init_from: the config value (a path or ``"random"``).
      checkpoint: absolute path of the ``checkpoints/<step>`` directory, or None.
      step: the pre-training step of that checkpoint, or None.
    """

    init_from: str
    checkpoint: str | None = None
    step: int | None = None


def load_encoder(
    init_from: str, random_params: Callable[[], PIMCParams]
) -> tuple[PIMCParams, EncoderSource]:
    """Parameters to evaluate and where they came from.

    Args:
      init_from: the config value (module docstring).
      random_params: builds fresh parameters for ``"random"``.
    """
    if not init_from:
        raise ValueError(
            "config.init_from is empty: give a pre-training workdir, a checkpoints/<step> "
            f"directory, or {RANDOM_INIT!r}"
        )
    if init_from == RANDOM_INIT:
        return random_params(), EncoderSource(init_from=RANDOM_INIT)
    params, meta, directory = load_checkpoint(init_from)
    step = int(meta["step"])
    logging.info("Evaluating %s (step %d)", directory, step)
    return params, EncoderSource(init_from=str(init_from), checkpoint=str(directory), step=step)


def random_encoder(
    config: ml_collections.ConfigDict,
    band_names: Sequence[str],
    image_mean: Sequence[float],
    image_std: Sequence[float],
    series_length: float | None = None,
    **s1_facts: Any,
) -> PIMCParams:
    """The ``init_from=random`` baseline: fresh parameters from ``config.model``/``config.data``.

    Args:
      band_names: names of the series bands the encoder reads.
      image_mean / image_std: per-band statistics of ``data.image_bands`` (what
        pre-training would give a fresh model).
      series_length: the median pixel's number of acquisitions (for ``model.rp_size = 0``).
      s1_facts: ``s1_band_names`` / ``s1_image_mean`` / ``s1_image_std`` for views that read
        Sentinel-1 (:func:`pimc_jax.data.statistics.s1_spec_facts`).
    """
    spec = ModelSpec.from_config(
        config,
        band_names=tuple(band_names),
        image_mean=tuple(image_mean),
        image_std=tuple(image_std),
        series_length=series_length,
        **s1_facts,
    )
    return init_params(spec, config.seed)
