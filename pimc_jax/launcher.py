"""What ``launch.py`` does with a config: set up processes, then dispatch on ``config.task``."""

from __future__ import annotations

from pathlib import Path

import jax
import ml_collections
from absl import logging

from pimc_jax import parallel

TASKS = ("pretrain", "eval_eurosat", "eval_pastis_classification", "eval_pastis_forecast")


def default_workdir(config_path: str) -> str:
    """``workdirs/<config file stem>`` under the current directory."""
    return str(Path("workdirs") / Path(config_path.split(":")[0]).stem)


def run(config: ml_collections.ConfigDict, workdir: str | None, *, config_path: str = "") -> dict:
    """Runs the job ``config.task`` names; returns its final metrics or results."""
    task = config.get("task")
    if task not in TASKS:
        raise ValueError(f"config.task must be one of {TASKS}, got {task!r}")
    distributed = config.get("distributed")
    if distributed is not None:
        parallel.initialize_distributed(
            coordinator_address=distributed.coordinator_address,
            num_processes=distributed.num_processes,
            process_id=distributed.process_id,
        )
    workdir = workdir or default_workdir(config_path or task)
    logging.info("task=%s workdir=%s devices=%s", task, workdir, jax.devices())
    if task == "pretrain":
        from pimc_jax.train import train_and_evaluate

        return train_and_evaluate(config, workdir)
    from pimc_jax.evaluation import run_evaluation

    return run_evaluation(config, workdir)
