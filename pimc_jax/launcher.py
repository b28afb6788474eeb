"""What ``launch.py`` does with a config: set up processes, then dispatch on ``config.task``."""

from __future__ import annotations

import errno
import importlib.util
import logging as py_logging
import os
import shutil
import sys
from pathlib import Path

import jax
import ml_collections
from absl import flags, logging

from pimc_jax import parallel, storage
from pimc_jax.evaluation import EVAL_TASKS, run_evaluation
from pimc_jax.evaluation.encoders import RANDOM_INIT
from pimc_jax.maps import MAP_TASKS, run_map_task
from pimc_jax.segmentation import SEGMENTATION_TASKS, run_segmentation_task
from pimc_jax.train import TrainingInterrupted, pretrain

# Every job launch.py runs, by ``config.task``: pre-training, the evaluations, the maps.
TASKS: tuple[str, ...] = ("pretrain", *EVAL_TASKS, *MAP_TASKS, *SEGMENTATION_TASKS)


def load_config(path: str | Path) -> ml_collections.ConfigDict:
    """``get_config()`` of a config file, as ``--config=PATH`` loads it (for scripts and tests).

    ``PATH:arg`` passes ``arg`` to ``get_config(arg)`` (variants: :mod:`pimc_jax.defaults`).
    """
    path, _, arg = str(path).partition(":")
    file = Path(path).resolve()
    if not file.is_file():
        raise FileNotFoundError(f"No config file {file}")
    module_spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def default_workdir(config_path: str) -> str:
    """``workdirs/<config file stem>`` under the current directory."""
    return str(Path("workdirs") / Path(config_path.split(":")[0]).stem)


# Data sources whose ``data.path`` may be a remote URL (``gs://``); the others read local files.
REMOTE_DATA_SOURCES: tuple[str, ...] = ("pastis", "eurosat")


def check_locations(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Checks every location the run reads or writes before any work is done.

    The workdir, ``config.init_from`` and ``config.data.path`` / ``test_path`` must each be
    a local path or a ``gs://`` URL whose filesystem is installed and whose bucket exists
    (:func:`pimc_jax.storage.check_location`); a remote data path must belong to a source
    that reads remote files (:data:`REMOTE_DATA_SOURCES`).

    Raises:
      pimc_jax.storage.StorageError: one line naming the flag, the location and the reason.
    """
    storage.check_location(workdir, "--workdir")
    init_from = config.get("init_from")
    if init_from and init_from != RANDOM_INIT:
        storage.check_location(init_from, "--config.init_from")
    data = config.get("data")
    if data is None:
        return
    for key in ("path", "test_path"):
        value = data.get(key)
        if not value:
            continue
        storage.check_location(value, f"--config.data.{key}")
        if storage.is_remote(value) and data.get("name") not in REMOTE_DATA_SOURCES:
            raise storage.StorageError(
                f"--config.data.{key}={value}: data.name={data.get('name')!r} reads local "
                f"files only (remote data directories work for data.name in "
                f"{REMOTE_DATA_SOURCES})"
            )


def _unknown_key(error: BaseException, argv: list[str]) -> str | None:
    """The message for an override of a key the config lacks, else None.

    ml_collections reports such a key as a ``KeyError`` (possibly inside an
    ``AttributeError``) whose text is the quoted key, then a "Did you mean" line.
    """
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    lines = str(error.args[0] if error.args else error).splitlines() or [""]
    key = lines[0].strip("'\"")
    overrides = [arg.partition("=")[0] for arg in argv[1:] if arg.startswith("--config.")]
    culprits = [flag for flag in overrides if key in flag.split(".")[1:]]
    if not key or not culprits:
        return None
    hint = " ".join(line.strip() for line in lines[1:])
    return f"flag {culprits[0]}: the config has no key {key!r}. {hint}".strip()


def _flag_error_line(message: str) -> str:
    """A flag error on one line; a config file's load traceback shrinks to its last line."""
    head, marker, trace = message.partition("Traceback (most recent call last):")
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    tail = f" {lines[-1]}" if marker and lines else ""
    return " ".join(head.split()) + tail


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, errors on one line; an unknown config key is a usage error too."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        message = _flag_error_line(str(error))
    except (AttributeError, KeyError) as error:
        message = _unknown_key(error, argv)
        if message is None:
            raise
    sys.stderr.write(f"FATAL Flags parsing error: {message}\n")
    sys.stderr.write("Pass --helpshort or --helpfull to see help on flags.\n")
    sys.exit(1)


class _QuietLibraries(py_logging.Filter):
    """Drops INFO chatter of Orbax and friends; keeps their warnings and our own logs."""

    NOISY = ("orbax", "etils", "tensorflow_datasets", "array_record", "gcsfs", "fsspec")

    def filter(self, record: py_logging.LogRecord) -> bool:
        if record.levelno >= py_logging.WARNING:
            return True
        return not any(name in record.pathname for name in self.NOISY)


def quiet_library_logs() -> None:
    logging.get_absl_handler().addFilter(_QuietLibraries())


# Exceptions that mean "fix your config or input", reported in one line by the CLI.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


def user_error_line(error: BaseException) -> str:
    """``FATAL: <Type>: <message>`` on one line (newlines folded), as the CLI prints it."""
    message = " ".join(str(error).split()) or repr(error)
    return f"FATAL: {type(error).__name__}: {message}"


def os_error_in(error: BaseException) -> OSError | None:
    """The first ``OSError`` in ``error``'s chain (itself, its cause or context), else None.

    Libraries that write asynchronously (Orbax) re-raise a failed write wrapped in their
    own exception types; the disk-full or permission error is in the chain.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _free_space(path: str) -> str:
    """``"1.2 GiB free on /mount"`` for the nearest existing local ancestor of ``path``."""
    if not path or storage.is_remote(path):
        return ""
    candidate = Path(path).absolute()
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    try:
        free = shutil.disk_usage(candidate).free
    except OSError:
        return ""
    size, unit = float(free), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return (
        f"{size:.1f} {unit} free on {candidate}" if unit != "B" else f"{free} B free on {candidate}"
    )


def os_error_line(error: OSError, workdir: str | None = None) -> str:
    """``FATAL: OSError: ...`` on one line, with the path and the free space there."""
    path = error.filename or workdir or ""
    free = _free_space(os.fspath(path)) if path else ""
    reason = error.strerror or str(error)
    where = f" writing {path}" if path else ""
    hint = (
        "free some space or use another --workdir"
        if error.errno == errno.ENOSPC
        else ("check the path and its permissions")
    )
    details = f" ({free})" if free else ""
    return f"FATAL: {type(error).__name__}: {reason}{where}{details}; {hint}"


def run_cli(
    config: ml_collections.ConfigDict,
    workdir: str | None,
    *,
    config_path: str = "",
    verbosity: int = 0,
) -> dict:
    """:func:`run` for ``launch.py``: a user error exits 1 with one line on stderr.

    User errors (:data:`USER_ERRORS`: bad config values, missing files, a refused resume,
    an unknown task, an unusable workdir or data location) and operating-system errors
    (a full disk, a denied permission: any ``OSError`` in the exception's chain) print
    ``FATAL: <Type>: <message>`` without a traceback; with ``verbosity >= 1``
    (``--verbosity=1``) they propagate, traceback included, as any other (internal)
    exception always does. Ctrl-C exits 130: during pre-training after saving the step
    it reached (one warning line says so), before that with one line.
    """
    try:
        config_file = Path(config_path.partition(":")[0])
        if config_path and not config_file.is_file():
            # config_flags defers this error to the config's first use, with a traceback.
            raise FileNotFoundError(f"no config file {config_file} (--config)")
        return run(config, workdir, config_path=config_path)
    except TrainingInterrupted:
        if verbosity >= 1:
            raise
        sys.exit(130)  # the loop logged its one line (the step saved, rerun to resume)
    except KeyboardInterrupt:
        if verbosity >= 1:
            raise
        sys.stderr.write("Interrupted (Ctrl-C) before training started; nothing was saved.\n")
        sys.exit(130)
    except USER_ERRORS as error:
        if verbosity >= 1:
            raise
        _fatal(user_error_line(error))
    except Exception as error:
        os_error = os_error_in(error)
        if verbosity >= 1 or os_error is None:
            raise
        _fatal(os_error_line(os_error, workdir))


def _fatal(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.exit(1)


def run(config: ml_collections.ConfigDict, workdir: str | None, *, config_path: str = "") -> dict:
    """Runs the job ``config.task`` names; returns its final metrics or results."""
    quiet_library_logs()
    task = config.get("task")
    if task not in TASKS:
        raise ValueError(f"config.task must be one of {TASKS}, got {task!r}")
    workdir = workdir or default_workdir(config_path or task)
    check_locations(config, workdir)
    distributed = config.get("distributed")
    if distributed is not None:
        parallel.initialize_distributed(
            coordinator_address=distributed.coordinator_address,
            num_processes=distributed.num_processes,
            process_id=distributed.process_id,
        )
    if not parallel.is_main_process():
        # Process 0 speaks for the run; the others only report problems.
        logging.set_verbosity(logging.WARNING)
    logging.info("task=%s workdir=%s devices=%s", task, workdir, jax.devices())
    if task == "pretrain":
        return pretrain(config, workdir)
    if task in MAP_TASKS:
        return run_map_task(config, workdir)
    if task in SEGMENTATION_TASKS:
        return run_segmentation_task(config, workdir)
    return run_evaluation(config, workdir)
