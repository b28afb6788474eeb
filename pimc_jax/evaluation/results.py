"""An evaluation's results on disk: ``results.json`` and ``results.md`` in its workdir.

:func:`write_results` writes both; :func:`results_markdown` renders the run facts, the
metric table, the per-class / per-model tables and any further ``tables``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from pimc_jax import storage


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def results_markdown(results: Mapping[str, Any]) -> str:
    """The ``results.md`` text: run facts, a metric table, per-class / per-model tables, and
    image links to the figures named by ``results["figures"]`` (name → file beside it)."""
    lines = [f"# {results.get('task', 'evaluation')}", ""]
    for key in ("init_from", "checkpoint", "step", "protocol", "num_devices"):
        if key in results:
            lines.append(f"- **{key}**: {results[key]}")
    for key, value in results.get("data", {}).items():
        lines.append(f"- **data.{key}**: {value}")
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {_format(value)} |" for name, value in results["metrics"].items()]
    if results.get("per_class"):
        lines += [
            "",
            "## Per class (test split)",
            "",
            "| class | name | precision | recall | F1 | support |",
            "|---|---|---|---|---|---|",
        ]
        for row in results["per_class"]:
            lines.append(
                f"| {row['class']} | {row['name']} | {_format(row['precision'])} | "
                f"{_format(row['recall'])} | {_format(row['f1'])} | {row['support']} |"
            )
    if results.get("rmse_by_model"):
        table = results["rmse_by_model"]
        columns = list(next(iter(table.values())))
        lines += [
            "",
            "## RMSE per index (z-scored scale, test split; lower is better)",
            "",
            "| model | " + " | ".join(columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for model, row in table.items():
            lines.append(f"| {model} | " + " | ".join(_format(row[c]) for c in columns) + " |")
    for title, rows in (results.get("tables") or {}).items():
        # Further tables: title → rows of {column: value} (e.g. per split, per event).
        if not rows:
            continue
        columns = list(rows[0])
        lines += ["", f"## {title}", "", "| " + " | ".join(columns) + " |"]
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(_format(row[c]) for c in columns) + " |" for row in rows]
    if results.get("figures"):
        # Figure files lie beside results.md (pimc_jax.evaluation.figures).
        lines += ["", "## Figures", ""]
        for name, file_name in results["figures"].items():
            lines += [f"![{name}]({file_name})", ""]
        lines.pop()
    return "\n".join(lines) + "\n"


def write_results(workdir: str | os.PathLike, results: Mapping[str, Any]) -> None:
    """Writes ``workdir/results.json`` and ``workdir/results.md`` (local or ``gs://``)."""
    path = storage.as_path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(
        json.dumps(results, indent=2, default=_json_default, allow_nan=True) + "\n"
    )
    (path / "results.md").write_text(results_markdown(results))
