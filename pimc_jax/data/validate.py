"""Checks of user data at load time, for values that would train without error into
nonsense: digital numbers read as reflectance, bands that hold no value at all, a
non-positive ``scale``, a label file with a single class.

Each check raises one ``ValueError`` line naming the file, the problem and the fix.
:mod:`pimc_jax.data.user` calls them on every pixel file and patch folder it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

# A median of the finite band values above this is not reflectance (nominally [0, 1]; a
# bright cloud or snow reaches about 1.5): it looks like digital numbers without ``scale``.
REFLECTANCE_MEDIAN_LIMIT = 2.0
# Values sampled for the median (a strided subset of large inputs).
_SAMPLE = 1_000_000


def check_scale(value: Any, where: str) -> float:
    """``scale`` as a float: a finite number > 0.

    Raises:
      ValueError: otherwise, naming the file and the usual value.
    """
    scale = np.asarray(value)
    if scale.shape != () or scale.dtype.kind not in "iuf" or not np.isfinite(scale):
        raise ValueError(f"{where}: scale must be a finite number, got {value!r}")
    if scale <= 0:
        raise ValueError(
            f"{where}: scale must be > 0 (it multiplies the bands into reflectance, e.g. "
            f"0.0001 for Sentinel-2 digital numbers), got {scale.item()!r}"
        )
    return float(scale)


def to_reflectance(values: np.ndarray, settings: Mapping[str, Any], where: str) -> np.ndarray:
    """Stored band values into reflectance: ``(values + offset) × scale``.

    ``offset`` (default 0) is Sentinel-2 L2A's ``BOA_ADD_OFFSET`` from processing baseline
    04.00 on (−1000 with ``scale`` 0.0001); ``scale`` defaults to 1.

    Args:
      values: float32 band values (NaN = gap).
      settings: the file's or folder's settings, with ``offset``/``scale`` keys or not.

    Raises:
      ValueError: a non-numeric or non-finite offset, a bad scale (:func:`check_scale`).
    """
    if "offset" in settings:
        offset = np.asarray(settings["offset"])
        if offset.shape != () or offset.dtype.kind not in "iuf" or not np.isfinite(offset):
            raise ValueError(
                f"{where}: offset must be a finite number (e.g. -1000 for Sentinel-2 L2A "
                f"from processing baseline 04.00), got {settings['offset']!r}"
            )
        values = values + np.float32(offset)
    if "scale" in settings:
        values = values * np.float32(check_scale(settings["scale"], where))
    return values


def _sample(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1)
    step = max(1, flat.size // _SAMPLE)
    return flat[::step]


def check_reflectance(
    bands: np.ndarray,
    band_names: Sequence[str],
    where: str,
    *,
    scaled: bool | None,
    name_empty_bands: bool = True,
) -> tuple[int, ...]:
    """Refuses inputs with no finite value and values that look like digital numbers; names
    the bands that hold no value at all (a sensor's band missing from a product).

    Args:
      bands: ``(..., C)`` float band values after ``scale``, NaN = gap.
      band_names: the ``C`` names.
      where: the file, for messages.
      scaled: whether a ``scale`` was applied (the message then says to check it; None:
        unknown, it says to give or check it).
      name_empty_bands: warn about bands that hold no value (off for pieces of a raster,
        where a band may be empty in one window only).

    Returns:
      The positions of the bands that hold at least one value (the caller drops or keeps
      the others; each is named in a warning here).

    Raises:
      ValueError: all values are gaps; the median value is above
        :data:`REFLECTANCE_MEDIAN_LIMIT`.
    """
    finite = np.isfinite(bands)
    if bands.size and not finite.any():
        raise ValueError(
            f"{where}: every band value is a gap (NaN, no-data, or masked by valid/scl); "
            "check nodata, valid and scl"
        )
    per_band = finite.reshape(-1, bands.shape[-1]).any(axis=0)
    empty = [str(name) for name, has in zip(band_names, per_band, strict=True) if not has]
    if empty and name_empty_bands:
        logging.warning(
            "%s: band(s) %s hold no value at all (every date is a gap); check nodata if "
            "that is unexpected",
            where,
            empty,
        )
    kept = tuple(int(k) for k in np.flatnonzero(per_band))
    sample = _sample(bands)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return kept
    median = float(np.median(sample))
    if median > REFLECTANCE_MEDIAN_LIMIT:
        fix = {
            True: "check scale (it should bring them into [0, 1])",
            False: "give scale (e.g. scale=0.0001 for Sentinel-2 digital numbers 0..10000)",
            None: "give or check scale (e.g. scale=0.0001 for Sentinel-2 digital numbers)",
        }[scaled]
        raise ValueError(
            f"{where}: band values look like digital numbers, not reflectance in [0, 1] "
            f"(median {median:.4g}, max {float(sample.max()):.4g}); {fix}"
        )
    return kept


def check_classes(labels: np.ndarray | None, where: str) -> None:
    """Refuses a label array holding one class only (nothing to classify).

    Raises:
      ValueError: naming the class.
    """
    if labels is None or labels.size == 0:
        return
    classes = np.unique(labels)
    if classes.size == 1:
        raise ValueError(
            f"{where}: every label is class {int(classes[0])}; a classifier needs at least "
            "two classes (check that the right label array was saved)"
        )
