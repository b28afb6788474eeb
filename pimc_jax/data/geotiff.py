"""GeoTIFF in and out: reading georeferenced rasters, writing per-pixel results for GIS.

Reading (:func:`read_raster`) is what the user patch folders use for their GeoTIFF time
series (the layouts are in :mod:`pimc_jax.data.user`). Writing (:func:`write_geotiff`,
:func:`write_patch_geotiff`) puts any ``(H, W)`` or ``(H, W, C)`` array, such as the
embeddings of :func:`pimc_jax.encode_patch`, their first principal components
(:func:`pimc_jax.encode.principal_components`) or an evaluation's per-pixel class map,
onto a patch's grid: same CRS, same affine transform, so QGIS overlays it on the input.

Example::

    patch = load_patch_folder("my_tifs/")[0]
    out = encode_patch(params, patch)
    pcs = principal_components(out["rp"], 3, valid=out["valid"])  # (H, W, 3) float32
    write_patch_geotiff("rp_pca.tif", pcs, patch)  # NaN (invalid pixels) is no-data
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioIOError, WindowError

from pimc_jax.data.patches import Patch, shift_transform


@dataclasses.dataclass(frozen=True)
class Raster:
    """One GeoTIFF as read by :func:`read_raster`.

    Attributes:
      values: ``(B, H, W)`` band values in the file's own dtype.
      descriptions: ``B`` band descriptions (``""`` where a band has none).
      nodata: ``B`` no-data values (None where a band has none).
      crs: the CRS as a string (``"EPSG:32631"`` or WKT), or None.
      transform: the affine transform ``(a, b, c, d, e, f)``.
    """

    values: np.ndarray
    descriptions: tuple[str, ...]
    nodata: tuple[float | None, ...]
    crs: str | None
    transform: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.values.shape[1], self.values.shape[2]

    def gaps(self) -> np.ndarray:
        """``(B, H, W)`` bool: True where a band holds its no-data value (or NaN)."""
        gaps = np.zeros(self.values.shape, bool)
        for band, value in enumerate(self.nodata):
            if value is None:
                continue
            if math.isnan(value):
                if self.values.dtype.kind == "f":
                    gaps[band] = np.isnan(self.values[band])
            else:
                gaps[band] = self.values[band] == value
        if self.values.dtype.kind == "f":
            gaps |= np.isnan(self.values)
        return gaps


def _crs_string(crs: CRS | None) -> str | None:
    if crs is None:
        return None
    return crs.to_string()


#: A raster window ``(row, col, rows, cols)`` in pixels.
Window = tuple[int, int, int, int]


def read_raster(path: str | os.PathLike[str], window: Window | None = None) -> Raster:
    """Reads every band of a GeoTIFF (or any raster GDAL opens) with its georeference.

    Args:
      path: the file.
      window: read only ``(row, col, rows, cols)`` (clipped at the raster's edge); the
        transform is then the window's own. None reads the whole raster.

    Returns:
      A :class:`Raster`: values ``(B, H, W)`` in the file's dtype, band descriptions,
      per-band no-data values, CRS string and affine transform.

    Raises:
      ValueError: one line naming the file when it cannot be read.
    """
    path = Path(path)
    try:
        with rasterio.open(path) as src:
            region = None
            if window is not None:
                row, col, rows, cols = (int(v) for v in window)
                region = rasterio.windows.Window(col, row, cols, rows).intersection(
                    rasterio.windows.Window(0, 0, src.width, src.height)
                )
            values = src.read(window=region)
            descriptions = tuple((d or "").strip() for d in src.descriptions)
            nodata = tuple(None if v is None else float(v) for v in src.nodatavals)
            crs = _crs_string(src.crs)
            transform = shift_transform(
                src.transform,
                0 if region is None else int(region.row_off),
                0 if region is None else int(region.col_off),
            )
    except (RasterioIOError, WindowError) as err:
        raise ValueError(f"{path}: not a readable GeoTIFF ({err})") from None
    return Raster(values, descriptions, nodata, crs, transform)


def raster_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(H, W)`` of a raster, from its header only.

    Raises:
      ValueError: one line naming the file when it cannot be read.
    """
    try:
        with rasterio.open(path) as src:
            return int(src.height), int(src.width)
    except RasterioIOError as err:
        raise ValueError(f"{path}: not a readable GeoTIFF ({err})") from None


def _as_affine(transform: Any) -> Affine:
    if isinstance(transform, Affine):
        coefficients = tuple(transform)[:6]
    else:
        coefficients = tuple(np.asarray(transform, np.float64).ravel().tolist())
    if len(coefficients) != 6 or not all(math.isfinite(c) for c in coefficients):
        raise ValueError(
            f"transform must be an affine.Affine or 6 finite numbers (a, b, c, d, e, f), "
            f"got {transform!r}"
        )
    affine = Affine(*coefficients)
    if affine.determinant == 0:
        raise ValueError(f"transform {coefficients} is degenerate (zero pixel area)")
    return affine


def _as_crs(crs: Any) -> CRS:
    try:
        return CRS.from_user_input(crs)
    except (CRSError, TypeError, ValueError) as err:
        raise ValueError(f"crs {crs!r} is not a CRS rasterio understands ({err})") from None


def write_geotiff(
    path: str | os.PathLike[str],
    array: np.ndarray,
    crs: Any,
    transform: Any,
    *,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
) -> Path:
    """Writes ``array`` as a (deflate-compressed) GeoTIFF on the given grid.

    Args:
      path: the ``.tif`` to write (overwritten).
      array: ``(H, W)`` or ``(H, W, C)`` values, C bands; float16/float32/float64, any
        integer dtype GDAL stores, or bool (written as uint8 0/1). float16 is written as
        float32.
      crs: the CRS: ``"EPSG:32631"``, WKT, a :class:`rasterio.crs.CRS`, ...
      transform: the affine transform: :class:`affine.Affine` or ``(a, b, c, d, e, f)``
        in that order (see :class:`~pimc_jax.data.patches.Patch`).
      nodata: the value marking no-data. Float arrays default to NaN; a number given for
        a float array also replaces the array's NaN.
      band_names: optional ``C`` band descriptions (e.g. ``["PC1", "PC2", "PC3"]``).

    Returns:
      ``path`` as a :class:`~pathlib.Path`.

    Raises:
      ValueError: one line naming the problem (rank, empty array, dtype, CRS, transform,
        number of band names, a nodata value the dtype cannot hold).
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"array must be (H, W) or (H, W, C), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"array has no pixel or no band: shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    if array.dtype.kind not in "iuf" or array.dtype.itemsize > 8:
        raise ValueError(f"array dtype {array.dtype} cannot be written; use numbers or bool")
    bands = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    num_bands, height, width = bands.shape
    crs_value, affine = _as_crs(crs), _as_affine(transform)
    if band_names is not None and len(band_names) != num_bands:
        raise ValueError(f"{num_bands} bands but {len(band_names)} band_names")
    if array.dtype.kind == "f":
        if nodata is None:
            nodata = float("nan")
        elif not math.isnan(nodata):
            bands = np.where(np.isnan(bands), np.asarray(nodata, bands.dtype), bands)
    elif nodata is not None:
        info = np.iinfo(array.dtype)
        if not (float(nodata).is_integer() and info.min <= nodata <= info.max):
            raise ValueError(f"nodata {nodata!r} does not fit the array dtype {array.dtype}")
    path = Path(path)
    profile = dict(
        driver="GTiff",
        height=height,
        width=width,
        count=num_bands,
        dtype=bands.dtype.name,
        crs=crs_value,
        transform=affine,
        nodata=nodata,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ascontiguousarray(bands))
        if band_names is not None:
            for index, name in enumerate(band_names, start=1):
                dst.set_band_description(index, str(name))
    return path


def write_patch_geotiff(
    path: str | os.PathLike[str],
    array: np.ndarray,
    patch: Patch,
    *,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
) -> Path:
    """:func:`write_geotiff` on ``patch``'s grid (its ``crs`` and ``transform``).

    Args:
      array: ``(H, W)`` or ``(H, W, C)`` per-pixel values of ``patch`` (same H, W), e.g.
        ``encode_patch(params, patch)["rp"]``, principal components, or class predictions.
      patch: a :class:`~pimc_jax.data.patches.Patch` read with its georeference (from
        GeoTIFFs, or a ``.npz`` patch carrying ``crs`` and ``transform``).
      nodata, band_names: as for :func:`write_geotiff`.

    Raises:
      ValueError: the patch has no georeference, or ``array`` is not ``(H, W[, C])``.
    """
    if patch.crs is None or patch.transform is None:
        raise ValueError(
            f"patch {patch.patch_id!r} has no georeference (crs and transform); read it from "
            "GeoTIFFs or give crs/transform in its .npz, or call write_geotiff"
        )
    array = np.asarray(array)
    if array.shape[:2] != (patch.height, patch.width) or array.ndim not in (2, 3):
        raise ValueError(
            f"array must be (H, W) or (H, W, C) with (H, W) = ({patch.height}, {patch.width}) "
            f"of patch {patch.patch_id!r}, got shape {array.shape}"
        )
    return write_geotiff(
        path, array, patch.crs, patch.transform, nodata=nodata, band_names=band_names
    )
