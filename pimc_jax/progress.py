"""Progress bars for long host-side loops, shown only to a person watching a terminal.

:func:`progress` wraps an iterable in a ``tqdm`` bar on standard error when bars are on,
and returns it unchanged otherwise, so logs, pipes, notebooks' captured output and tests
stay free of bar lines. Bars are on when standard error is a terminal, unless the
environment variable ``PIMC_JAX_PROGRESS`` says otherwise (``0``/``false``/``off``: never;
``1``/``true``/``on``: always); a caller may also force them with ``enabled``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

ENV_VAR = "PIMC_JAX_PROGRESS"
_OFF = frozenset({"0", "false", "no", "off"})
_ON = frozenset({"1", "true", "yes", "on"})

T = TypeVar("T")


def progress_enabled(enabled: bool | None = None) -> bool:
    """Whether to draw a bar: ``enabled`` if given, else ``PIMC_JAX_PROGRESS``, else
    whether standard error is a terminal."""
    if enabled is not None:
        return bool(enabled)
    setting = os.environ.get(ENV_VAR, "").strip().lower()
    if setting in _OFF:
        return False
    if setting in _ON:
        return True
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool | None = None,
) -> Iterable[T] | Iterator[T]:
    """``iterable`` with a progress bar on standard error when bars are on (module docstring).

    Args:
      iterable: what to iterate over.
      total: number of items (taken from ``len(iterable)`` when it has one).
      desc: label shown before the bar, e.g. ``"PASTIS patches"``.
      unit: name of one item, e.g. ``"patch"``.
      enabled: force the bar on (True) or off (False); None decides as the module says.

    Returns:
      ``iterable`` itself when bars are off (or ``tqdm`` is not installed), else a ``tqdm``
      iterator over it that removes its bar when done.
    """
    if not progress_enabled(enabled):
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # optional: without tqdm, no bar
        return iterable
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        leave=False,
        mininterval=0.5,
        dynamic_ncols=True,
    )
