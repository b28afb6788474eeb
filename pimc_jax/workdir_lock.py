"""One run per workdir: a lock file ``WORKDIR/run.lock`` held while a pre-training runs.

The lock file is JSON: ``host``, ``pid``, ``pid_start`` (the process's start time in
clock ticks since boot, from ``/proc``, so a recycled pid is not mistaken for the holder)
and ``started`` (UTC, ISO 8601). It is created atomically (``O_CREAT | O_EXCL`` on a local
disk; on ``gs://`` an upload with ``ifGenerationMatch=0``, which only succeeds if no such
object exists), so of two runs started together exactly one gets it. The other is refused
with one line naming the holder (:class:`WorkdirLockedError`).

A lock left by a process that died (``kill -9``, a crash of the machine) is stale: when
its host is this host and its process no longer exists (or its pid now belongs to a
process started at another time), the next run takes it over: it renames the stale file
to ``run.lock.stale-<pid>-<time>`` (one rename succeeds, the racing one fails), then
creates its own. A lock held on another host cannot be checked from here: the message says
to delete the file if that run is gone. The lock is released (its file removed, only if
it is still ours) when the run ends, however it ends short of ``kill -9``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Self

from absl import logging

from pimc_jax import storage

LOCK_NAME = "run.lock"


class WorkdirLockedError(ValueError):
    """Another live run holds the workdir (its message is one line naming it)."""


def _pid_start(pid: int) -> int | None:
    """The start time (clock ticks since boot) of process ``pid``, from ``/proc``; None if
    unknown (no ``/proc``) — and None too for a process that does not exist."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            stat = file.read()
    except OSError:
        return None
    # Field 22; the command name (field 2) is in parentheses and may hold spaces.
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _alive(pid: int, pid_start: int | None) -> bool:
    """Whether process ``pid`` (started at ``pid_start``, if known) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if pid_start is not None:
        now = _pid_start(pid)
        if now is not None and now != pid_start:
            return False  # the pid was recycled by a newer process
    return True


def _describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('started')}"


class WorkdirLock:
    """Context manager holding ``WORKDIR/run.lock`` for the length of a run.

    Args:
      workdir: the run's workdir (local path or ``gs://`` URL); created if missing.
      enabled: whether this process takes the lock (only the main process of a
        multi-host run does).

    Raises:
      WorkdirLockedError: (on entry) a live run holds the workdir.
    """

    def __init__(self, workdir: storage.PathLike, *, enabled: bool = True) -> None:
        self.directory = storage.as_path(workdir)
        self.path = self.directory / LOCK_NAME
        self.enabled = enabled
        self.held = False
        pid = os.getpid()
        self.record = {
            "host": socket.gethostname(),
            "pid": pid,
            "pid_start": _pid_start(pid),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self._text = json.dumps(self.record) + "\n"

    def _create(self) -> bool:
        """Creates the lock file atomically; False if it exists already."""
        data = self._text.encode()
        if storage.is_remote(self.path):
            from etils.epath import backend

            filesystem = backend.fsspec_backend.fs(os.fspath(self.path))
            try:
                filesystem.pipe_file(os.fspath(self.path), data, mode="create")
            except (FileExistsError, OSError) as error:
                if self.path.exists():
                    return False
                raise error
            return True
        try:
            descriptor = os.open(os.fspath(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        return True

    def _holder(self) -> dict[str, Any] | None:
        """The lock file's record (``{}`` if unreadable), or None if it vanished."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def _stale(self, holder: dict[str, Any]) -> bool:
        if holder.get("host") != self.record["host"]:
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool):
            return False
        return pid != os.getpid() and not _alive(pid, holder.get("pid_start"))

    def acquire(self) -> None:
        """Takes the lock (see the class docstring)."""
        if not self.enabled:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # a few rounds against racing takers of a stale lock
            if self._create():
                self.held = True
                return
            holder = self._holder()
            if holder is None:
                continue  # released meanwhile: try again
            if not self._stale(holder):
                raise WorkdirLockedError(
                    f"workdir {self.directory} is in use by another run ({_describe(holder)}; "
                    f"lock file {self.path}); wait for it to finish or use another --workdir "
                    "(if that run is gone, delete the lock file)"
                )
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            aside = self.directory / f"{LOCK_NAME}.stale-{holder.get('pid')}-{stamp}"
            try:
                self.path.rename(aside)
            except (FileNotFoundError, FileExistsError):
                continue  # another run took it over first
            logging.warning(
                "Took over the stale lock of %s (that process is gone); kept as %s.",
                _describe(holder),
                aside,
            )
        raise WorkdirLockedError(
            f"workdir {self.directory}: could not take the lock file {self.path} (other runs "
            "keep taking it); use another --workdir"
        )

    def release(self) -> None:
        """Removes the lock file if it is still this run's."""
        if not self.held:
            return
        self.held = False
        try:
            if self._holder() == self.record:
                self.path.unlink()
        except OSError as error:  # never let releasing hide the run's own outcome
            logging.warning("Could not remove the lock file %s: %s", self.path, error)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
