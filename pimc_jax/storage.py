"""Local paths and remote URLs (``gs://bucket/path``) for workdirs and data directories.

Everything the library reads or writes itself (checkpoints, ``config.json``, metrics,
TensorBoard events, evaluation results, the PASTIS / EuroSAT manual directories) goes
through :func:`as_path`, an :class:`etils.epath.Path`: a local path behaves as a
:class:`pathlib.Path`, and a ``gs://`` URL is read and written through ``gcsfs`` (the
``gcs`` extra: ``pip install 'pimc_jax[gcs]'``). Orbax writes checkpoint arrays to
``gs://`` through TensorStore's own ``gcs`` driver.

A location that cannot work fails before any work, in one line naming it and the reason
(:class:`StorageError`, a ``ValueError`` the command line prints as one ``FATAL`` line): an
unsupported scheme (``s3://``, ``hdfs://``...), a URL with one slash (``gs:/bucket``), a
``gs://`` URL without ``gcsfs`` installed, or (:func:`check_location`) a bucket that does
not exist or cannot be reached.

Object stores cannot append to an object: :class:`RemoteAppendFile` keeps a file's bytes
in memory and rewrites the whole object at each flush (metrics lines and TensorBoard
events are small, so this costs little), and :func:`append_text` does the same for one
line. :func:`local_staging` lets code that only writes local files (figures) write into a
temporary directory whose files are then copied to a remote workdir.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from etils import epath

#: Remote schemes a workdir or data directory may use: scheme → (module its filesystem
#: needs, what to install).
REMOTE_SCHEMES: dict[str, tuple[str, str]] = {"gs": ("gcsfs", "pip install 'pimc_jax[gcs]'")}

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# ``gs:/bucket``: what ``pathlib.Path("gs://bucket")`` makes of a URL, or a typo.
_ONE_SLASH = re.compile(r"^(gs|s3|az|hf|http|https|file):/(?!/)", re.IGNORECASE)

PathLike = str | os.PathLike[str]


class StorageError(ValueError):
    """A workdir or data location that cannot be used (its message is one line)."""


def _text(path: PathLike) -> str:
    return os.fspath(path)


def url_scheme(path: PathLike) -> str | None:
    """``"gs"`` for ``gs://bucket/x``; ``None`` for a local path."""
    match = _URL.match(_text(path))
    return match.group(1).lower() if match else None


def is_remote(path: PathLike) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return url_scheme(path) is not None


@functools.cache
def _module_available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def check_scheme(path: PathLike, what: str = "path") -> None:
    """Raises :class:`StorageError` unless ``path`` is local or a usable remote URL.

    No network access: this checks the URL's form, its scheme and that the scheme's
    filesystem package is installed.

    Args:
      path: a local path or a URL.
      what: how the message names the location, e.g. ``"--workdir"``.
    """
    text = _text(path)
    scheme = url_scheme(text)
    if scheme is None:
        one_slash = _ONE_SLASH.match(text)
        if one_slash:
            name = one_slash.group(1)
            raise StorageError(
                f"{what}={text}: not a valid URL ('{name}:/' needs two slashes: "
                f"{name}://{text[len(name) + 2 :]})"
            )
        return
    if scheme not in REMOTE_SCHEMES:
        supported = ", ".join(f"{name}://" for name in REMOTE_SCHEMES)
        raise StorageError(
            f"{what}={text}: unsupported storage scheme '{scheme}://' (supported: local "
            f"paths and {supported})"
        )
    module, install = REMOTE_SCHEMES[scheme]
    if not _module_available(module):
        raise StorageError(
            f"{what}={text}: {scheme}:// paths need the '{module}' package, which is not "
            f"installed ({install})"
        )


def as_path(path: PathLike) -> epath.Path:
    """``path`` as an :class:`etils.epath.Path` (local paths stay as given, relative or not).

    Raises:
      StorageError: :func:`check_scheme` refuses it.
    """
    check_scheme(path)
    return epath.Path(_text(path))


def absolute(path: PathLike) -> epath.Path:
    """:func:`as_path`, made absolute when local (a URL is absolute already)."""
    result = as_path(path)
    return result if is_remote(path) else result.absolute()


def refresh(path: PathLike) -> None:
    """Forgets the directory listings cached for remote paths, so that the next listing
    shows what other processes wrote since (gcsfs caches listings without expiry; a
    process polling a bucket for new checkpoints must ask again). No-op for local paths.
    """
    if not is_remote(path):
        return
    scheme = url_scheme(path)
    if scheme in REMOTE_SCHEMES and _module_available(REMOTE_SCHEMES[scheme][0]):
        from etils.epath import backend

        backend.fsspec_backend.fs(_text(path)).invalidate_cache()


def one_line(error: BaseException, limit: int = 300) -> str:
    """``Type: message`` of an exception on one line, shortened to ``limit`` characters."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_location(path: PathLike, what: str = "path") -> None:
    """:func:`check_scheme`, and for a URL, that its bucket exists and can be reached.

    Buckets are never created: a missing one is an error here rather than a bucket
    quietly made by the first write.

    Raises:
      StorageError: one line naming ``what``, the location and the reason.
    """
    check_scheme(path, what)
    scheme = url_scheme(path)
    if scheme is None:
        return
    text = _text(path)
    bucket = text[len(scheme) + 3 :].split("/", 1)[0]
    if not bucket:
        raise StorageError(f"{what}={text}: no bucket name in the URL")
    root = f"{scheme}://{bucket}"
    try:
        found = epath.Path(root).exists()
    except Exception as error:  # filesystems raise many types; name the location either way
        raise StorageError(f"{what}={text}: cannot reach {root} ({one_line(error)})") from error
    if not found:
        raise StorageError(f"{what}={text}: bucket {root} does not exist or cannot be accessed")


class RemoteAppendFile:
    """An append-only file on an object store: its bytes are kept in memory and the whole
    object is rewritten at each :meth:`flush` (object stores have no append).

    Args:
      path: the object's URL.
      keep: start from the object's current content (if it exists), as ``open(path, "a")``
        does; otherwise start empty, as ``"w"`` does.
    """

    def __init__(self, path: PathLike, *, keep: bool = True) -> None:
        self.path = as_path(path)
        self._data = bytearray(self.path.read_bytes() if keep and self.path.exists() else b"")
        self._dirty = True  # the first flush creates the object, even if empty
        self.closed = False

    @property
    def content(self) -> bytes:
        """Everything the file holds, flushed or not."""
        return bytes(self._data)

    def write(self, data: str | bytes) -> int:
        """Appends ``data`` (text is encoded as UTF-8); returns its length."""
        if self.closed:
            raise ValueError(f"{self.path} is closed")
        self._data += data.encode("utf-8") if isinstance(data, str) else data
        self._dirty = True
        return len(data)

    def flush(self) -> None:
        """Uploads the whole content if anything changed since the last flush."""
        if self._dirty and not self.closed:
            self.path.write_bytes(bytes(self._data))
            self._dirty = False

    def close(self) -> None:
        self.flush()
        self.closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_text_atomic(path: PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` so that a reader (or a crash) sees the old content or the
    new one, never an empty or partial file: locally through a temporary file in the same
    directory, flushed and renamed over ``path``; an object store's upload is atomic."""
    if is_remote(path):
        as_path(path).write_text(text)
        return
    target = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # as open() would make it (mkstemp makes 0600)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def append_text(path: PathLike, text: str) -> None:
    """Appends ``text`` to the file ``path`` (created if missing), local or remote."""
    if is_remote(path):
        with RemoteAppendFile(path) as file:
            file.write(text)
        return
    with open(path, "a", encoding="utf-8") as file:
        file.write(text)


@contextlib.contextmanager
def local_staging(directory: PathLike) -> Iterator[Path]:
    """A local directory standing in for ``directory`` while code writes local files.

    For a local ``directory`` this is ``directory`` itself. For a URL it is a temporary
    directory; when the block ends without error, every file written into it is copied to
    the same relative path under ``directory``.
    """
    if not is_remote(directory):
        yield Path(directory)
        return
    target = as_path(directory)
    with tempfile.TemporaryDirectory(prefix="pimc_jax_staging_") as staging:
        yield Path(staging)
        for file in sorted(Path(staging).rglob("*")):
            if file.is_file():
                destination = target / file.relative_to(staging).as_posix()
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(file.read_bytes())
