"""The package's import graph follows the pipeline order the README's layout table states.

Reference: the order written out below (indices → recurrence → models → preprocessing →
loss → optim → step → train; data and evaluation beside; the figure library figures
above evaluation; encode and the figure command plot leaves), checked against
the imports parsed from the source with ``ast`` (every import, also inside functions).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pimc_jax"

# Rank of each top-level part: a module may import only parts of a lower or equal rank.
RANKS = {
    "defaults": 0,
    "vocabulary": 0,
    "compat": 0,
    "parallel": 0,
    "metrics": 0,
    "storage": 0,
    "progress": 0,
    "workdir_lock": 0,
    "pca": 0,
    "indices": 1,
    "resample": 1,
    "data": 2,
    "recurrence": 2,
    "valid_tower": 3,
    "windowed": 3,
    "spec": 3,
    "models": 3,
    "checkpoint_faults": 4,
    "config_checks": 4,
    "checkpoint": 4,
    "preprocessing": 4,
    "augment": 4,
    "loss": 4,
    "optim": 4,
    "step": 5,
    "evaluation": 6,
    "train": 6,
    "encode": 7,
    "encode_checks": 7,
    "encode_inputs": 7,
    "encode_dense": 7,
    "figures": 7,
    "maps": 8,
    "segmentation": 8,
    "launcher": 8,
    "plot": 8,
}
# The evaluation tasks import the shared evaluation modules, never each other.
EVALUATION_TASKS = ("pixel_classification", "forecasting", "image_classification")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``pimc_jax`` module ``path`` imports (``from pimc_jax import x`` gives both)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pimc_jax"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pimc_jax"))
    # Keep the names that are modules or packages of the source tree.
    root = PACKAGE.parent
    return {
        name
        for name in found
        if (root / f"{name.replace('.', '/')}.py").is_file()
        or (root / name.replace(".", "/")).is_dir()
    }


MODULES = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_part_has_a_rank():
    parts = {_part(m) for m in MODULES} - {None}
    assert parts <= set(RANKS), sorted(parts - set(RANKS))


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _part(m)))
def test_imports_point_down_the_pipeline(module):
    rank = RANKS[_part(module)]
    upward = [
        name for name in MODULES[module] if _part(name) is not None and RANKS[_part(name)] > rank
    ]
    assert not upward, f"{module} imports {upward}, above it in the pipeline"


@pytest.mark.parametrize("module", ["pimc_jax.models", "pimc_jax.spec", "pimc_jax.step"])
def test_the_model_and_the_step_need_nothing_from_data(module):
    """Views and their checks come from the vocabulary at the bottom floor, so the model
    side does not sit on top of the data readers."""
    assert not {name for name in MODULES[module] if name.startswith("pimc_jax.data")}


# Calls that count hosts, build device meshes or synchronise processes.
HOST_AND_MESH_CALLS = ("process_index", "process_count", "Mesh", "multihost_utils")


def test_hosts_and_meshes_are_handled_in_parallel_only():
    """Every host count, mesh and barrier goes through :mod:`pimc_jax.parallel`; the
    reference is the attribute names read from the parsed source."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "parallel.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "attr", None) or getattr(node, "module", None) or ""
            if isinstance(node, ast.alias):
                name = node.name
            if name.split(".")[-1] in HOST_AND_MESH_CALLS and not (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "parallel"
            ):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {name}")
    assert not offenders, offenders


def test_inference_api_is_a_leaf():
    importers = [m for m, names in MODULES.items() if "pimc_jax.encode" in names]
    # The package root re-exports it; the figure command, ranked above it, draws embeddings;
    # the map tasks, ranked above it too, write embedding rasters and their previews.
    # The segmentation evaluations, ranked above it too, run its dense image pass.
    maps = [m for m in importers if m.startswith(("pimc_jax.maps.", "pimc_jax.segmentation."))]
    assert [m for m in importers if m not in maps] == ["pimc_jax", "pimc_jax.plot"]


def test_figure_command_is_a_leaf():
    importers = [m for m, names in MODULES.items() if "pimc_jax.plot" in names]
    assert importers == []


def test_evaluation_tasks_do_not_import_each_other():
    for task in EVALUATION_TASKS:
        others = {f"pimc_jax.evaluation.{t}" for t in EVALUATION_TASKS if t != task}
        assert not MODULES[f"pimc_jax.evaluation.{task}"] & others, task


def test_import_leaves_the_environment_alone_and_the_launcher_call_sets_the_flags():
    """``import pimc_jax`` changes no variable; ``set_xla_cpu_flags`` adds the CPU flag once,
    keeps a flag the user set by name, and ``PIMC_JAX_XLA_CPU_FLAGS=0`` turns it off."""
    import subprocess
    import sys

    code = """
import os
from pimc_jax import parallel
import pimc_jax
assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/nowhere", os.environ["XLA_FLAGS"]
os.environ["PIMC_JAX_XLA_CPU_FLAGS"] = "0"
assert not parallel.set_xla_cpu_flags()
del os.environ["PIMC_JAX_XLA_CPU_FLAGS"]
assert parallel.set_xla_cpu_flags()
assert os.environ["XLA_FLAGS"].split() == ["--xla_dump_to=/nowhere", *parallel.XLA_CPU_FLAGS]
assert not parallel.set_xla_cpu_flags()
name = parallel.XLA_CPU_FLAGS[0].split("=")[0]
os.environ["XLA_FLAGS"] = name + "=DEFAULT"
assert not parallel.set_xla_cpu_flags() and os.environ["XLA_FLAGS"] == name + "=DEFAULT"
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "PIMC_JAX_XLA_CPU_FLAGS"}
    env["XLA_FLAGS"] = "--xla_dump_to=/nowhere"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
