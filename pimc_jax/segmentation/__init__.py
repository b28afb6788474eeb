"""Per-pixel segmentation evaluations of the image towers, run densely over whole chips.

=============  =================  ===================================================
``config.task``  module             encoder, metrics
=============  =================  ===================================================
``eval_floods``  :mod:`.floods`     ``s1_image`` / ``s2_image`` tower, dense; water IoU
``eval_landcover``  :mod:`.landcover`  the same towers on labelled SITS patches; mIoU
=============  =================  ===================================================

They sit above :mod:`pimc_jax.encode` (whose dense image pass they use) and reuse the
evaluation package's encoder loading (``init_from``, :mod:`pimc_jax.evaluation.encoders`),
probes and ``results.json`` / ``results.md`` writing. :mod:`.dense` computes a tower's
features at every pixel of a chip; :mod:`.figures` draws chips, labels and predictions.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from pimc_jax import parallel, storage
from pimc_jax.evaluation import evaluate
from pimc_jax.evaluation.encoders import check_protocol, load_encoder
from pimc_jax.evaluation.figures import write_figures
from pimc_jax.evaluation.results import write_results
from pimc_jax.segmentation.figures import write_flood_examples
from pimc_jax.segmentation.floods import FloodSegmentation
from pimc_jax.segmentation.landcover import LandCoverMapping

SEGMENTATION_EVALUATORS: dict[str, Any] = {
    "eval_floods": FloodSegmentation,
    "eval_landcover": LandCoverMapping,
}
SEGMENTATION_TASKS: tuple[str, ...] = tuple(SEGMENTATION_EVALUATORS)


def run_segmentation_task(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs ``config.task`` on the encoder ``config.init_from``; writes ``results.json``,
    ``results.md`` and the figures into ``workdir``; returns the results."""
    if config.task not in SEGMENTATION_EVALUATORS:
        raise ValueError(f"config.task must be one of {SEGMENTATION_TASKS}, got {config.task!r}")
    check_protocol(config.protocol)
    if config.get("poll", False):
        raise ValueError(f"{config.task} evaluates one checkpoint: config.poll is not supported")
    evaluator = SEGMENTATION_EVALUATORS[config.task](config)
    params, source = load_encoder(config.init_from, evaluator.random_params)
    results = evaluate(config, evaluator, params, source)
    if parallel.is_main_process():
        with storage.local_staging(workdir) as figure_dir:
            figures = write_figures(figure_dir, results)
            figures.update(write_flood_examples(figure_dir, getattr(evaluator, "examples", [])))
        results = {**results, "figures": figures}
        write_results(workdir, results)
    return results


__all__ = ["SEGMENTATION_TASKS", "run_segmentation_task"]
