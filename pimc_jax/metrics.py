"""Training metrics: console progress with ETA, a JSONL file and TensorBoard event files.

:class:`MetricWriter` is what the training loop uses; it composes

* :class:`ProgressLogger` -- one console line per logged step, e.g.
  ``step 120/1000 | loss 3.21 | acc_a2b 0.41 | 512 pairs/s | ETA 3m12s``;
* :class:`JsonlWriter` -- ``<workdir>/metrics.jsonl``, one JSON object per logged step;
* :class:`TensorBoardWriter` -- ``<workdir>/tensorboard/events.out.tfevents.<time>.<host>``.

The TensorBoard writer does not need TensorFlow: it builds the ``Event``/``Summary``
protocol buffers with `tensorboardX <https://github.com/lanpa/tensorboardX>`_'s message
classes and writes them with its (synchronous) TFRecord writer, which needs only numpy
and protobuf.

The workdir may be a ``gs://`` URL (:mod:`pimc_jax.storage`). Object stores cannot append,
so there both files are kept in memory and each flush (one per written step) rewrites the
whole object: what a method has written is in the bucket when it returns, as it is on disk
for a local workdir. TensorBoard reads the event files from the bucket directly
(``tensorboard --logdir gs://bucket/run/tensorboard``).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any, Self, TextIO

import numpy as np
from tensorboardX import RecordWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.proto.tensor_pb2 import TensorProto
from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboardX.proto.types_pb2 import DT_STRING
from tensorboardX.record_writer import masked_crc32c

from pimc_jax import storage

__all__ = [
    "JsonlWriter",
    "MetricWriter",
    "ProgressLogger",
    "TensorBoardWriter",
    "format_duration",
]

# --------------------------------------------------------------------------------------
# Value conversion shared by the writers.


def _to_python_scalar(name: str, value: Any) -> Any:
    """Python int/float/bool/str/None from a Python, NumPy or JAX scalar."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if hasattr(value, "shape") or isinstance(value, np.generic):
        array = np.asarray(value)  # also pulls a JAX array to the host
        if array.ndim != 0:
            raise ValueError(f"metric {name!r} must be a scalar, got shape {array.shape}")
        return array.item()
    if isinstance(value, numbers.Real):
        return float(value)
    raise ValueError(f"metric {name!r} has unsupported type {type(value).__name__}")


def _to_float(name: str, value: Any) -> float:
    scalar = _to_python_scalar(name, value)
    if not isinstance(scalar, int | float):  # bool is an int
        raise ValueError(f"metric {name!r} must be numeric, got {scalar!r}")
    return float(scalar)


# --------------------------------------------------------------------------------------
# Writers.


class _AppendOnlyFile:
    """Flush/close/context-manager plumbing shared by the file writers (``self._file``)."""

    _file: Any

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _RemoteRecords:
    """TFRecord framing (as ``tensorboardX.RecordWriter`` writes it) into a remote file."""

    def __init__(self, path: str) -> None:
        self._file = storage.RemoteAppendFile(path, keep=False)

    def write(self, data: bytes) -> None:
        header = struct.pack("Q", len(data))
        self._file.write(
            header
            + struct.pack("I", masked_crc32c(header))
            + data
            + struct.pack("I", masked_crc32c(data))
        )

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardWriter(_AppendOnlyFile):
    """Writes scalar (and text) summaries to a TensorBoard event file, without TensorFlow.

    The file is ``<logdir>/events.out.tfevents.<unix time>.<hostname>`` (with a ``.<n>``
    suffix if that name is taken, e.g. on a restart within the same second). Its first
    record is the ``file_version: "brain.Event:2"`` event TensorBoard expects. Records are
    written synchronously by ``tensorboardX.RecordWriter`` (no background thread), so what
    a method has written is on disk when it returns.

    Args:
      logdir: directory for the event file; created if missing. A ``gs://`` URL writes
        the file there (module docstring).
      purge_step: a resumed run's first step: a ``SessionLog.START`` event at that step
        makes TensorBoard drop the events of earlier runs' files from this step on, so a
        step trained again appears once.
    """

    def __init__(self, logdir: str | os.PathLike[str], *, purge_step: int | None = None) -> None:
        self._purge_step = purge_step
        self.logdir = os.fspath(logdir)
        self._file: RecordWriter | _RemoteRecords | None
        if storage.is_remote(self.logdir):
            self._open_remote()
            return
        os.makedirs(self.logdir, exist_ok=True)
        base = os.path.join(
            self.logdir, f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
        )
        suffix = 0
        while True:  # claim a fresh name atomically; RecordWriter would truncate an old file
            path = f"{base}.{suffix}" if suffix else base
            try:
                open(path, "xb").close()
                break
            except FileExistsError:
                suffix += 1
        self.path = path
        # An absolute path keeps tensorboardX from routing a "gs:..."/"s3:..." name remotely.
        self._file = RecordWriter(os.path.abspath(path))
        self._start()

    def _start(self) -> None:
        """The file-version event, and the purge event of a resumed run."""
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if self._purge_step is not None:
            start = SessionLog(status=SessionLog.START)
            self._write(Event(wall_time=time.time(), step=self._purge_step, session_log=start))

    def _open_remote(self) -> None:
        """The event file under a remote ``logdir``: the first free name, written at once."""
        directory = storage.as_path(self.logdir)
        base = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
        suffix = 0
        while (directory / (f"{base}.{suffix}" if suffix else base)).exists():
            suffix += 1  # only the main process writes, so checking first is enough
        self.path = os.fspath(directory / (f"{base}.{suffix}" if suffix else base))
        self._file = _RemoteRecords(self.path)
        self._start()

    def _write(self, event: Event) -> None:
        """Appends ``event`` as one TFRecord and flushes it to disk."""
        if self._file is None:
            raise ValueError(f"TensorBoard event file {self.path} is closed")
        self._file.write(event.SerializeToString())
        self._file.flush()

    def scalars(self, step: int, values: Mapping[str, Any]) -> None:
        """Writes one event holding ``values`` (tag -> number) at ``step``, then flushes.

        Values may be Python, NumPy or JAX scalars; they are stored as float32.
        """
        if not values:
            return
        summary = Summary(
            value=[
                Summary.Value(tag=tag, simple_value=_to_float(tag, value))
                for tag, value in values.items()
            ]
        )
        self._write(Event(wall_time=time.time(), step=int(step), summary=summary))

    def text(self, step: int, tag: str, text: str) -> None:
        """Writes ``text`` (shown as Markdown by TensorBoard's text tab) under ``tag``."""
        tensor = TensorProto(  # a scalar string tensor: empty shape
            dtype=DT_STRING, tensor_shape=TensorShapeProto(), string_val=[text.encode("utf-8")]
        )
        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
        summary = Summary(value=[Summary.Value(tag=tag, metadata=metadata, tensor=tensor)])
        self._write(Event(wall_time=time.time(), step=int(step), summary=summary))


def _line_step(line: str) -> int | None:
    """The ``step`` of one metrics line, or None if it has none (or does not parse)."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


def _cut_jsonl(path: str, last_step: int) -> None:
    """Drops the lines of ``path`` whose step is after ``last_step`` (atomic rewrite)."""
    file = storage.as_path(path)
    if not file.exists():
        return
    lines = file.read_text().splitlines(keepends=True)
    kept = [line for line in lines if (_line_step(line) or 0) <= last_step]
    if len(kept) == len(lines):
        return
    text = "".join(line if line.endswith("\n") else line + "\n" for line in kept)
    storage.write_text_atomic(path, text)


class JsonlWriter(_AppendOnlyFile):
    """Appends one JSON object per line, ``{"step": step, **metrics}``, flushed at each write.

    Opening an existing file appends to it (resuming a run keeps earlier lines); a last
    line left incomplete by a crash is terminated first so new lines stay parseable.
    NumPy/JAX scalars are converted to Python numbers; non-finite floats are written as
    ``NaN``/``Infinity`` (which :func:`json.loads` reads back).

    Args:
      path: the ``.jsonl`` file; its directory is created if missing. A ``gs://`` URL
        writes the file there (module docstring).
      keep_through_step: a resumed run's checkpoint step: lines of later steps (written
        before the run stopped, and about to be trained again) are dropped first, so that
        no step appears twice. The file is rewritten atomically; lines that do not parse
        are kept.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, keep_through_step: int | None = None
    ) -> None:
        self.path = os.fspath(path)
        self._file: TextIO | storage.RemoteAppendFile | None
        if keep_through_step is not None:
            _cut_jsonl(self.path, keep_through_step)
        if storage.is_remote(self.path):
            self._file = storage.RemoteAppendFile(self.path)
            if self._file.content and not self._file.content.endswith(b"\n"):
                self._file.write("\n")
            self._file.flush()  # the file exists from now on, as a local one would
            return
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        needs_newline = False
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, "rb") as existing:
                existing.seek(-1, os.SEEK_END)
                needs_newline = existing.read(1) != b"\n"
        self._file = open(self.path, "a", encoding="utf-8")
        if needs_newline:
            self._file.write("\n")

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Appends ``{"step": step, **metrics}`` as one line and flushes it."""
        if self._file is None:
            raise ValueError(f"metrics file {self.path} is closed")
        if "step" in metrics:
            raise ValueError(f"metrics for {self.path} must not contain the key 'step'")
        record = {"step": int(step)}
        record.update({name: _to_python_scalar(name, value) for name, value in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()


# --------------------------------------------------------------------------------------
# Console progress.


def format_duration(seconds: float) -> str:
    """Human-readable duration: ``45s``, ``3m12s``, ``1h02m``, ``2d03h``."""
    if not math.isfinite(seconds):
        return "--"
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def _print_flush(line: str) -> None:
    print(line, flush=True)


class ProgressLogger:
    """Console progress lines with throughput and ETA.

    Each :meth:`update` emits
    ``step 120/1000 | loss 3.21 | acc_a2b 0.41 | 512 pairs/s | ETA 3m12s``.
    Seconds per step are estimated from the wall time between consecutive updates,
    smoothed with an exponential moving average (the first interval seeds it); the first
    update only sets the reference point, so its line reads ``ETA --``. Starting the
    reference after the first (compiling) step keeps compilation out of the estimate.

    Args:
      total_steps: the run's last step, shown as ``step/total``; ETA is
        ``(total_steps - step) * seconds_per_step``.
      log: called with each line (``print`` by default; ``absl.logging.info`` works too).
      items_per_step: items processed per step (e.g. the global batch size); when given,
        throughput ``items_per_step / seconds_per_step`` is shown.
      items_name: unit of the throughput, e.g. ``"pairs"``.
      smoothing: weight of the previous estimate in the moving average, in [0, 1).
      clock: returns the current time in seconds (``time.perf_counter`` by default).
    """

    def __init__(
        self,
        total_steps: int,
        *,
        log: Callable[[str], Any] = _print_flush,
        items_per_step: int | None = None,
        items_name: str = "pairs",
        smoothing: float = 0.9,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if total_steps < 0:
            raise ValueError(f"total_steps must be >= 0, got {total_steps}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.total_steps = int(total_steps)
        self.log = log
        self.items_per_step = items_per_step
        self.items_name = items_name
        self.smoothing = smoothing
        self.clock = clock
        self._last_step: int | None = None
        self._last_time = 0.0
        self.seconds_per_step: float | None = None

    def _observe(self, step: int) -> None:
        now = self.clock()
        if self._last_step is not None and step > self._last_step:
            measured = (now - self._last_time) / (step - self._last_step)
            if self.seconds_per_step is None:
                self.seconds_per_step = measured
            else:
                self.seconds_per_step = (
                    self.smoothing * self.seconds_per_step + (1.0 - self.smoothing) * measured
                )
        self._last_step, self._last_time = step, now

    def update(self, step: int, metrics: Mapping[str, Any] | None = None) -> str:
        """Updates the step-time estimate, emits the progress line through ``log``, returns it.

        Args:
          step: the step just completed.
          metrics: name -> scalar, shown in order with 4 significant digits.
        """
        step = int(step)
        self._observe(step)
        parts = [f"step {step}/{self.total_steps}"]
        for name, value in (metrics or {}).items():
            scalar = _to_python_scalar(name, value)
            if isinstance(scalar, float):
                parts.append(f"{name} {scalar:.4g}")
            else:
                parts.append(f"{name} {scalar}")
        if self.seconds_per_step is not None and self.seconds_per_step > 0:
            if self.items_per_step:
                rate = self.items_per_step / self.seconds_per_step
                parts.append(f"{rate:.0f} {self.items_name}/s")
            eta = max(0, self.total_steps - step) * self.seconds_per_step
            parts.append(f"ETA {format_duration(eta)}")
        else:
            parts.append("ETA --")
        line = " | ".join(parts)
        self.log(line)
        return line


# --------------------------------------------------------------------------------------
# The composed writer.


class MetricWriter:
    """Console progress + ``<workdir>/metrics.jsonl`` + ``<workdir>/tensorboard/`` events.

    In a multi-host run only one process should write: pass
    ``enabled=parallel.is_main_process()``; a disabled writer creates no files or
    directories and prints nothing.

    Args:
      workdir: the run's directory; created if missing (when enabled).
      total_steps: the run's last step, for the progress line and ETA.
      enabled: whether this process writes anything.
      items_per_step: items per step (global batch size) for the console throughput.
      items_name: unit of the throughput.
      log: console sink for the progress line (``print`` by default).
      resumed_at: the checkpoint step a run starts from (0 afresh): metrics of later steps
        are cut from ``metrics.jsonl`` and purged from TensorBoard's view, so that the
        steps trained again appear once.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        total_steps: int,
        enabled: bool = True,
        items_per_step: int | None = None,
        items_name: str = "pairs",
        log: Callable[[str], Any] = _print_flush,
        resumed_at: int | None = None,
    ) -> None:
        self.workdir = os.fspath(workdir)
        self.enabled = enabled
        self._jsonl: JsonlWriter | None = None
        self._tensorboard: TensorBoardWriter | None = None
        self._progress: ProgressLogger | None = None
        if enabled:
            self._jsonl = JsonlWriter(
                os.path.join(self.workdir, "metrics.jsonl"), keep_through_step=resumed_at
            )
            self._tensorboard = TensorBoardWriter(
                os.path.join(self.workdir, "tensorboard"),
                purge_step=None if resumed_at is None else resumed_at + 1,
            )
            self._progress = ProgressLogger(
                total_steps, log=log, items_per_step=items_per_step, items_name=items_name
            )

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Logs scalar ``metrics`` (name -> Python/NumPy/JAX scalar) at ``step`` to all sinks.

        Raises:
          ValueError: a metric is not a numeric scalar.
        """
        if self._jsonl is None or self._tensorboard is None or self._progress is None:
            return  # disabled
        values = {name: _to_float(name, value) for name, value in metrics.items()}
        self._jsonl.write(step, values)
        self._tensorboard.scalars(step, values)
        self._progress.update(step, values)

    def write_text(self, step: int, tag: str, text: str) -> None:
        """Writes ``text`` (e.g. the run's config) to TensorBoard's text tab."""
        if self._tensorboard is not None:
            self._tensorboard.text(step, tag, text)

    def flush(self) -> None:
        for sink in (self._jsonl, self._tensorboard):
            if sink is not None:
                sink.flush()

    def close(self) -> None:
        for sink in (self._jsonl, self._tensorboard):
            if sink is not None:
                sink.close()

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
