"""Downstream evaluations of PIMC encoders, each run by its own config.

=============================  ==============================  ================================
``config.task``                module                          encoder, metrics
=============================  ==============================  ================================
``eval_pastis_classification``  :mod:`.pixel_classification`  RP; accuracy, macro-F1, per class
``eval_pastis_forecast``        :mod:`.forecasting`            RP + head; RMSE per index
``eval_eurosat``                :mod:`.image_classification`  image; accuracy, macro-F1, per class
=============================  ==============================  ================================

Each task module has an evaluator class built from the config (it loads the data once)
with ``random_params()`` (the baseline encoder) and ``run(params) -> results``.
:func:`run_evaluation` picks the encoder (:func:`.common.load_encoder`), runs it and writes
``WORKDIR/results.json`` / ``results.md``. With ``config.poll`` it keeps watching the
pre-training workdir ``config.init_from`` and evaluates every new checkpoint as it lands:
each into ``WORKDIR/steps/<step>/``, the latest also into ``WORKDIR/results.*`` and one
line per checkpoint into ``WORKDIR/history.jsonl``. Polling stops when the checkpoint of
the pre-training's last step (``total_steps`` of its config) has been evaluated, or after
``poll_timeout_s`` seconds without a new checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
from absl import logging

from pimc_jax import parallel
from pimc_jax.checkpoint import checkpoint_steps, load_checkpoint, locate_checkpoint
from pimc_jax.evaluation import common
from pimc_jax.evaluation.common import EncoderSource
from pimc_jax.models import PIMCParams

EVAL_TASKS: tuple[str, ...] = (
    "eval_eurosat",
    "eval_pastis_classification",
    "eval_pastis_forecast",
)


def make_evaluator(config: ml_collections.ConfigDict) -> Any:
    """The evaluator object of ``config.task`` (loads its data)."""
    if config.protocol not in common.PROTOCOLS:
        raise ValueError(
            f"config.protocol must be one of {common.PROTOCOLS}, got {config.protocol!r}"
        )
    if config.task == "eval_pastis_classification":
        from pimc_jax.evaluation.pixel_classification import PixelClassification

        return PixelClassification(config)
    if config.task == "eval_pastis_forecast":
        from pimc_jax.evaluation.forecasting import Forecasting

        return Forecasting(config)
    if config.task == "eval_eurosat":
        from pimc_jax.evaluation.image_classification import ImageClassification

        return ImageClassification(config)
    raise ValueError(f"config.task must be one of {EVAL_TASKS}, got {config.task!r}")


def _results(
    config: ml_collections.ConfigDict, source: EncoderSource, outcome: dict[str, Any]
) -> dict[str, Any]:
    return {
        "task": config.task,
        "protocol": config.protocol,
        "init_from": source.init_from,
        "checkpoint": source.checkpoint,
        "step": source.step,
        "num_devices": jax.device_count(),
        **outcome,
        "config": config.to_dict(),
    }


def evaluate(
    config: ml_collections.ConfigDict, evaluator: Any, params: PIMCParams, source: EncoderSource
) -> dict[str, Any]:
    """Runs ``evaluator`` on ``params``; returns the full results dict (not written)."""
    start = time.time()
    outcome = evaluator.run(params)
    results = _results(config, source, outcome)
    results["seconds"] = round(time.time() - start, 2)
    summary = ", ".join(f"{k}={v:.4f}" for k, v in results["metrics"].items())
    logging.info("%s [%s, step %s]: %s", config.task, source.init_from, source.step, summary)
    return results


def _poll(config: ml_collections.ConfigDict, workdir: Path, evaluator: Any) -> dict[str, Any]:
    source_dir = Path(config.init_from)
    done: set[int] = set()
    last: dict[str, Any] = {}
    last_new = time.time()
    while True:
        pending = [s for s in checkpoint_steps(source_dir) if s not in done]
        for step in pending:
            try:
                params, meta, directory = load_checkpoint(locate_checkpoint(source_dir, step))
                total_steps = meta.get("config", {}).get("total_steps")
            except (FileNotFoundError, ValueError) as error:  # deleted by keep-N meanwhile
                logging.warning("Skipping checkpoint %d: %s", step, error)
                done.add(step)
                continue
            source = EncoderSource(str(config.init_from), str(directory), step)
            last = evaluate(config, evaluator, params, source)
            done.add(step)
            last_new = time.time()
            if parallel.is_main_process():
                common.write_results(workdir / "steps" / str(step), last)
                common.write_results(workdir, last)
                with open(workdir / "history.jsonl", "a") as history:
                    history.write(json.dumps({"step": step, **last["metrics"]}) + "\n")
            if total_steps is not None and step >= int(total_steps):
                logging.info("Evaluated the final checkpoint (step %d); stopping.", step)
                return last
        if time.time() - last_new > config.poll_timeout_s:
            logging.info("No new checkpoint for %.0f s; stopping.", config.poll_timeout_s)
            if not last:
                raise FileNotFoundError(f"No checkpoint appeared under {source_dir}")
            return last
        time.sleep(config.poll_interval_s)


def run_evaluation(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs the evaluation ``config.task`` names and writes its results to ``workdir``.

    Returns:
      The results dict written to ``workdir/results.json`` (the last one when polling).
    """
    if config.task not in EVAL_TASKS:
        raise ValueError(f"config.task must be one of {EVAL_TASKS}, got {config.task!r}")
    evaluator = make_evaluator(config)
    workdir_path = Path(workdir)
    if config.get("poll", False):
        if config.init_from == common.RANDOM_INIT:
            raise ValueError("config.poll needs init_from to be a pre-training workdir")
        return _poll(config, workdir_path, evaluator)
    params, source = common.load_encoder(config.init_from, evaluator.random_params)
    results = evaluate(config, evaluator, params, source)
    if parallel.is_main_process():
        common.write_results(workdir_path, results)
    return results


__all__ = ["EVAL_TASKS", "evaluate", "make_evaluator", "run_evaluation"]
