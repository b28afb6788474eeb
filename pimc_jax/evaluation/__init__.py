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
:func:`run_evaluation` picks the encoder (``init_from``, and how it is evaluated,
``protocol``: :mod:`.encoders`), runs it and writes ``WORKDIR/results.json`` /
``results.md`` (:mod:`.results`) with the figures they link (:mod:`.figures`:
``confusion.png`` or ``forecast_examples.png``). With ``config.poll`` it keeps watching the
pre-training workdir ``config.init_from`` and evaluates every new checkpoint as it lands:
each into ``WORKDIR/steps/<step>/``, the latest also into ``WORKDIR/results.*`` and one
line per checkpoint into ``WORKDIR/history.jsonl``. Polling stops when the checkpoint of
the pre-training's last step (``total_steps`` of its config) has been evaluated, or after
``poll_timeout_s`` seconds without a new checkpoint.

The task modules import only these shared modules, never each other:

* :mod:`.encoders`: which encoder (``init_from``) and how (``protocol``);
* :mod:`.towers`: a PIMC tower as a function of arrays, frozen features, chunked predict;
* :mod:`.probes`: the ``linear`` protocol (logistic and ridge probes);
* :mod:`.finetune`: the ``finetune`` protocol (supervised training of tower and head);
* :mod:`.scores`: confusion matrix, accuracy and F1, RMSE;
* :mod:`.results`: ``results.json`` / ``results.md``;
* :mod:`.figures`: the figures written beside them (confusion matrix, forecast examples);
* :mod:`.pixels`: labelled pixel series and their train / val / test splits;
* :mod:`.classification`: the protocol and the scores of both classification tasks.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import ml_collections
from absl import logging
from etils import epath

from pimc_jax import parallel, storage
from pimc_jax.checkpoint import checkpoint_steps, load_checkpoint, locate_checkpoint
from pimc_jax.evaluation.encoders import RANDOM_INIT, EncoderSource, check_protocol, load_encoder
from pimc_jax.evaluation.figures import write_figures
from pimc_jax.evaluation.forecasting import Forecasting
from pimc_jax.evaluation.image_classification import ImageClassification
from pimc_jax.evaluation.pixel_classification import PixelClassification
from pimc_jax.evaluation.results import write_results
from pimc_jax.models import PIMCParams

# The evaluation tasks: ``config.task`` → evaluator class (the one list of their names).
EVALUATORS: dict[str, Any] = {
    "eval_eurosat": ImageClassification,
    "eval_pastis_classification": PixelClassification,
    "eval_pastis_forecast": Forecasting,
}
EVAL_TASKS: tuple[str, ...] = tuple(EVALUATORS)


def make_evaluator(config: ml_collections.ConfigDict) -> Any:
    """The evaluator object of ``config.task`` (loads its data)."""
    check_protocol(config.protocol)
    if config.task not in EVALUATORS:
        raise ValueError(f"config.task must be one of {EVAL_TASKS}, got {config.task!r}")
    return EVALUATORS[config.task](config)


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


def write_outputs(workdir: str | os.PathLike, results: dict[str, Any]) -> dict[str, Any]:
    """Draws the results' figures into ``workdir``, then writes ``results.json`` /
    ``results.md`` (which link them); returns the results with their ``figures`` entry.

    A ``gs://`` workdir gets the figures drawn locally, then copied there."""
    with storage.local_staging(workdir) as figure_dir:
        figures = write_figures(figure_dir, results)
    results = {**results, "figures": figures}
    write_results(workdir, results)
    return results


def _final_step(source_dir: epath.Path) -> int | None:
    """``total_steps`` of the pre-training run in ``source_dir``: from its newest
    ``config.<step>.json`` (written by a resume), else ``config.json``; None if unreadable."""
    configs = sorted(
        source_dir.glob("config.*.json"),
        key=lambda p: int(p.name.split(".")[1]) if p.name.split(".")[1].isdigit() else -1,
    )
    for path in [*reversed(configs), source_dir / "config.json"]:
        try:
            return int(json.loads(path.read_text())["total_steps"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _poll(config: ml_collections.ConfigDict, workdir: epath.Path, evaluator: Any) -> dict[str, Any]:
    source_dir = storage.as_path(config.init_from)
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
                final = _final_step(source_dir)
                if final is not None and step >= final:
                    raise ValueError(
                        f"the final checkpoint (step {step}) of {source_dir} cannot be read "
                        f"({error}); rerun the pre-training command with the same workdir to "
                        "write it again (the bad step is set aside), then this evaluation"
                    ) from error
                logging.warning("Skipping checkpoint %d: %s", step, error)
                done.add(step)
                continue
            source = EncoderSource(str(config.init_from), str(directory), step)
            last = evaluate(config, evaluator, params, source)
            done.add(step)
            last_new = time.time()
            if parallel.is_main_process():
                write_outputs(workdir / "steps" / str(step), last)
                last = write_outputs(workdir, last)
                storage.append_text(
                    workdir / "history.jsonl", json.dumps({"step": step, **last["metrics"]}) + "\n"
                )
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

    Args:
      config: an evaluation config (``configs/eval_*.py``).
      workdir: a local directory or a ``gs://`` URL (:mod:`pimc_jax.storage`);
        ``config.init_from`` may be either too.

    Returns:
      The results dict written to ``workdir/results.json`` (the last one when polling).
    """
    if config.task not in EVAL_TASKS:
        raise ValueError(f"config.task must be one of {EVAL_TASKS}, got {config.task!r}")
    workdir_path = storage.as_path(workdir)
    evaluator = make_evaluator(config)
    if config.get("poll", False):
        if config.init_from == RANDOM_INIT:
            raise ValueError("config.poll needs init_from to be a pre-training workdir")
        return _poll(config, workdir_path, evaluator)
    params, source = load_encoder(config.init_from, evaluator.random_params)
    results = evaluate(config, evaluator, params, source)
    if parallel.is_main_process():
        results = write_outputs(workdir_path, results)
    return results


__all__ = ["EVALUATORS", "EVAL_TASKS", "evaluate", "make_evaluator", "run_evaluation"]
