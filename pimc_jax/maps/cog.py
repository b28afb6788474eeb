"""Cloud-Optimized GeoTIFFs, written so that no final name ever holds a partial file.

A raster is first built as a *partial* file (``<final>.partial.tif``): an uncompressed,
tiled GeoTIFF whose windows are written one at a time (:func:`create_partial`,
:func:`write_window`), so that a killed run keeps every window it finished. When every
window is in, :func:`finish_cog` sets band descriptions, tags, scales and a colour table,
copies the partial file with GDAL's ``COG`` driver (deflate, internal overviews) to
``<final>.tmp`` and renames that onto ``<final>`` (an atomic rename on one filesystem).
:func:`write_cog` does all of it for an array held in memory; :func:`atomic_write` gives
any other file (a PNG, a JSON) the same temporary-name-then-rename treatment.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.shutil import copy as gdal_copy
from rasterio.windows import Window

from pimc_jax.data.geotiff import _as_affine, _as_crs

PARTIAL_SUFFIX = ".partial.tif"
TEMPORARY_SUFFIX = ".tmp"


def partial_path(final: str | os.PathLike[str]) -> Path:
    """Where the windows of ``final`` are gathered before it is written."""
    return Path(f"{final}{PARTIAL_SUFFIX}")


def temporary_path(final: str | os.PathLike[str]) -> Path:
    """The name ``final`` is written under, then renamed from."""
    return Path(f"{final}{TEMPORARY_SUFFIX}")


@contextlib.contextmanager
def atomic_write(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path to write; on success renames it onto ``final``.

    On an exception the temporary file is removed and ``final`` is left as it was.
    """
    final = Path(final)
    temporary = temporary_path(final)
    try:
        yield temporary
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def block_size(height: int, width: int, block: int) -> int:
    """The COG tile size: ``block``, or for a smaller raster the multiple of 16 covering it
    (at least 128, GDAL's smallest COG tile)."""
    if block < 128 or block % 16:
        raise ValueError(f"maps.block_size must be a multiple of 16 of at least 128, got {block}")
    longest = max(height, width)
    return min(block, max(128, 16 * math.ceil(longest / 16)))


def overview_count(height: int, width: int, block: int) -> int:
    """Overview levels (each halving the size) until the raster fits one tile; at least 1
    for any raster over one pixel, so that every output has internal overviews."""
    size, levels = max(height, width), 0
    while size > block:
        size = math.ceil(size / 2)
        levels += 1
    return max(levels, 1 if max(height, width) > 1 else 0)


def create_partial(
    path: str | os.PathLike[str],
    *,
    height: int,
    width: int,
    count: int,
    dtype: str,
    crs: Any,
    transform: Any,
    nodata: float | None,
    block: int = 256,
) -> Path:
    """Creates an empty, uncompressed, tiled GeoTIFF to fill window by window.

    Uncompressed tiles keep their place in the file, so a window rewritten after an
    interruption replaces its bytes in place."""
    path = Path(path)
    tile = block_size(height, width, block)
    profile = dict(
        driver="GTiff",
        height=height,
        width=width,
        count=count,
        dtype=dtype,
        crs=_as_crs(crs),
        transform=_as_affine(transform),
        nodata=nodata,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        BIGTIFF="IF_SAFER",
    )
    with atomic_write(path) as temporary, rasterio.open(temporary, "w", **profile):
        pass
    return path


def write_window(path: str | os.PathLike[str], array: np.ndarray, row: int, col: int) -> None:
    """Writes ``array`` ``(h, w, C)`` at ``(row, col)`` of a partial file and closes it, so
    the window is on disk when this returns."""
    bands = np.moveaxis(np.asarray(array), -1, 0)
    window = Window(col, row, bands.shape[2], bands.shape[1])
    with rasterio.open(path, "r+") as dst:
        dst.write(np.ascontiguousarray(bands.astype(dst.dtypes[0], copy=False)), window=window)


def finish_cog(
    partial: str | os.PathLike[str],
    final: str | os.PathLike[str],
    *,
    descriptions: Sequence[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    scales: Sequence[float] | None = None,
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
    half_float: bool = False,
    resampling: str = "average",
    block: int = 256,
    keep_partial: bool = False,
) -> Path:
    """Turns a complete partial file into the COG ``final`` (temporary name, then rename).

    Args:
      descriptions: one per band (QGIS shows them as band names).
      tags: dataset metadata (GDAL metadata items; values are written as text).
      scales: per-band scale (a reader multiplies stored values by it).
      colormap: a colour table for band 1 (uint8/uint16 rasters): value → RGBA.
      half_float: store float32 bands as IEEE half floats (GDAL ``NBITS=16``).
      resampling: how overviews are computed (``average``, ``nearest``, ``mode``).
      block: the tile size (:func:`block_size`).
      keep_partial: leave the partial file (else it is removed once ``final`` exists).
    """
    partial, final = Path(partial), Path(final)
    with rasterio.open(partial, "r+") as dst:
        height, width = dst.height, dst.width
        for index, text in enumerate(descriptions or (), start=1):
            dst.set_band_description(index, str(text))
        if tags:
            dst.update_tags(**{str(k): str(v) for k, v in tags.items()})
        if scales is not None:
            dst.scales = tuple(float(s) for s in scales)
        if colormap:
            dst.write_colormap(1, dict(colormap))
    tile = block_size(height, width, block)
    options: dict[str, Any] = dict(
        BLOCKSIZE=tile,
        COMPRESS="DEFLATE",
        OVERVIEWS="IGNORE_EXISTING",
        OVERVIEW_COUNT=overview_count(height, width, tile),
        RESAMPLING=resampling.upper(),
        OVERVIEW_RESAMPLING=resampling.upper(),
        BIGTIFF="IF_SAFER",
    )
    if half_float:
        options["NBITS"] = 16
    with atomic_write(final) as temporary:
        gdal_copy(str(partial), str(temporary), driver="COG", **options)
    if not keep_partial:
        partial.unlink(missing_ok=True)
    return final


def write_cog(
    final: str | os.PathLike[str],
    array: np.ndarray,
    crs: Any,
    transform: Any,
    *,
    nodata: float | None = None,
    **finish: Any,
) -> Path:
    """Writes an in-memory ``(H, W)`` or ``(H, W, C)`` array as the COG ``final``.

    Float arrays are stored as float32 with NaN as no-data unless ``nodata`` is given;
    ``finish`` takes :func:`finish_cog`'s keywords.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.size == 0:
        raise ValueError(f"array must be a non-empty (H, W) or (H, W, C), got {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype.kind == "f":
        array = array.astype(np.float32, copy=False)
        if nodata is None:
            nodata = float("nan")
    partial = partial_path(final)
    create_partial(
        partial,
        height=array.shape[0],
        width=array.shape[1],
        count=array.shape[2],
        dtype=array.dtype.name,
        crs=crs,
        transform=transform,
        nodata=nodata,
        block=finish.get("block", 256),
    )
    write_window(partial, array, 0, 0)
    return finish_cog(partial, final, **finish)


def read_decimated(
    path: str | os.PathLike[str], max_size: int, *, masked: bool = False
) -> np.ndarray:
    """``(h, w, C)`` values of a raster read at most ``max_size`` pixels on its longer side
    (GDAL picks an overview or decimates), for previews: bounded memory at any size."""
    with rasterio.open(path) as src:
        factor = max(1, math.ceil(max(src.height, src.width) / max_size))
        shape = (src.count, max(1, src.height // factor), max(1, src.width // factor))
        values = src.read(out_shape=shape, masked=masked)
    return np.moveaxis(values, 0, -1)
