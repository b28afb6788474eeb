"""The ``embed`` task: every patch of a folder → embeddings COG, valid-mask COG, PCA preview.

``python launch.py --config=configs/embed.py --config.init_from=PRETRAIN_WORKDIR
--config.data.path=DIR --workdir=OUT`` writes, for each patch ``ID`` of ``DIR`` (read by
:func:`pimc_jax.data.load_patches`, ``data.name=patches``), into ``OUT/embeddings/``:

* ``ID.embeddings.tif``: a Cloud-Optimized GeoTIFF on the patch's grid (its CRS and
  transform), one band per embedding dimension of the towers ``maps.towers``
  (descriptions ``rp_00``, …, ``image_00``, …), NaN (int8: -128) where the pixel had no
  usable acquisition, tags naming the checkpoint, its step, the views and towers;
* ``ID.valid.tif``: uint8, 1 where the pixel had a usable acquisition;
* ``ID.pca.png``: the first three principal components as RGB (``maps.preview``).

Work is done window by window (``maps.window_size``): each window is read with a halo of
the towers' crop radius (:func:`halo_pixels`), embedded with
:func:`pimc_jax.encode.encode_patch`, cropped back and written into a partial file
(:mod:`pimc_jax.maps.cog`); ``ID.embed_state.json`` lists the windows on disk. A rerun
of the same command skips patches whose outputs exist and resumes a patch at its first
unfinished window; final names only ever hold complete files. In ``exact`` mode a
window's embeddings equal those of the whole patch (the halo covers every crop).
GeoTIFF patches of a local folder are read window by window too
(:func:`pimc_jax.data.user.patch_sources`), so the peak memory depends on the window
size, not on the raster's (``bench/map_memory.py`` measures it); ``.npz`` patches and
the other sources are read whole.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import rasterio
from absl import logging

from pimc_jax import parallel, storage
from pimc_jax import progress as progress_lib
from pimc_jax.data import load_patches, validate
from pimc_jax.data.patches import Patch, shard_patches
from pimc_jax.data.radar import check_s1_setting
from pimc_jax.data.statistics import image_statistics, s1_spec_facts
from pimc_jax.data.user import DEFAULT_SCL_INVALID_CLASSES, PatchSource, patch_sources
from pimc_jax.data.views import check_views
from pimc_jax.encode import ENCODE_MODES, encode_patch
from pimc_jax.evaluation.encoders import EncoderSource, load_encoder, random_encoder
from pimc_jax.indices import resolve_image_bands
from pimc_jax.maps import cog
from pimc_jax.maps.config import EMBED_DTYPES
from pimc_jax.maps.preview import pca_preview
from pimc_jax.models import TOWERS, PIMCParams

INT8_NODATA = -128
EMBEDDINGS_DIR = "embeddings"


def output_paths(folder: str | Path, patch_id: str) -> dict[str, Path]:
    """The final files of one patch under ``folder`` (and its resume state)."""
    folder = Path(folder)
    return {
        "embeddings": folder / f"{patch_id}.embeddings.tif",
        "valid": folder / f"{patch_id}.valid.tif",
        "preview": folder / f"{patch_id}.pca.png",
        "state": folder / f"{patch_id}.embed_state.json",
    }


def local_workdir(workdir: str) -> Path:
    """The workdir as a local path; map tasks write rasters with GDAL, locally only."""
    if storage.is_remote(workdir):
        raise ValueError(f"--workdir={workdir}: map tasks write local folders only")
    return Path(workdir)


def check_maps(maps: ml_collections.ConfigDict) -> None:
    """One-line errors for bad ``maps`` settings."""
    towers = tuple(maps.towers)
    if not towers or any(t not in TOWERS for t in towers) or len(set(towers)) != len(towers):
        raise ValueError(f"maps.towers must be distinct names from {TOWERS}, got {towers}")
    if maps.dtype not in EMBED_DTYPES:
        raise ValueError(f"maps.dtype must be one of {EMBED_DTYPES}, got {maps.dtype!r}")
    if maps.mode not in ENCODE_MODES:
        raise ValueError(f"maps.mode must be one of {ENCODE_MODES}, got {maps.mode!r}")
    if int(maps.window_size) < 1:
        raise ValueError(f"maps.window_size must be positive, got {maps.window_size}")
    cog.block_size(1, 1, int(maps.block_size))  # checks it


class LoadedPatch:
    """A patch already in memory, read whole or by window like a
    :class:`~pimc_jax.data.user.PatchSource`."""

    def __init__(self, patch: Patch) -> None:
        self.patch = patch
        self.patch_id = patch.patch_id

    def size(self) -> tuple[int, int]:
        return self.patch.height, self.patch.width

    def read(self, window: tuple[int, int, int, int] | None = None) -> Patch:
        return self.patch if window is None else self.patch.window(window)


MapSource = PatchSource | LoadedPatch


def map_sources(data: ml_collections.ConfigDict) -> list[MapSource]:
    """This process's share of the patches named by ``data``, unread where they can be read
    by window (a local folder, ``data.name=patches``), else loaded."""
    index, count = parallel.process_index(), parallel.process_count()
    if data.name == "patches" and data.get("path") and not storage.is_remote(data.path):
        classes = tuple(data.get("scl_invalid_classes", DEFAULT_SCL_INVALID_CLASSES))
        sources = list(
            shard_patches(patch_sources(data.path, scl_invalid_classes=classes), index, count)
        )
        if not sources:
            raise ValueError(f"No patches in {data.path} for process {index} of {count}")
        return sources
    return [LoadedPatch(p) for p in load_patches(data, process_index=index, process_count=count)]


def load_map_encoder(
    config: ml_collections.ConfigDict, sources: Sequence[MapSource]
) -> tuple[PIMCParams, EncoderSource]:
    """``config.init_from``'s parameters (``"random"``: fresh towers for these patches, their
    statistics from the patches read whole)."""

    def random_params() -> PIMCParams:
        data = config.data
        patches = [source.read() for source in sources]
        image_bands = resolve_image_bands(data.image_bands, patches[0].band_names)
        mean, std = image_statistics(patches, image_bands)
        views = check_views(config.model.get("views", ("s2_rp", "s2_image")), "model.views")
        facts = s1_spec_facts(patches, views, tuple(data.get("s1_image_bands", ())))
        return random_encoder(config, patches[0].band_names, mean, std, **facts)

    return load_encoder(config.init_from, random_params)


def halo_pixels(params: PIMCParams, mode: str) -> int:
    """Pixels read around a window so that its pixels see what they see in the whole patch:
    the crop radius (plus the Sentinel-1 multilook radius); ``fast`` mode reads a crop."""
    spec = params.spec
    radius = spec.crop_size // 2 + spec.s1_multilook // 2
    return max(radius, spec.crop_size) if mode == "fast" else radius


def windows(height: int, width: int, size: int) -> list[tuple[int, int, int, int]]:
    """``(row, col, rows, cols)`` of the windows covering the raster, row-major."""
    return [
        (row, col, min(size, height - row), min(size, width - col))
        for row in range(0, height, size)
        for col in range(0, width, size)
    ]


def embed_window(
    params: PIMCParams,
    source: MapSource,
    size: tuple[int, int],
    window: tuple[int, int, int, int],
    halo: int,
    maps: ml_collections.ConfigDict,
    keep_s1: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols, D)`` float32 embeddings (NaN where invalid) and ``(rows, cols)`` valid
    of one window of a ``size`` ``(H, W)`` raster, computed on the window plus its halo
    (clipped at the raster's edge), which is all that is read."""
    row, col, rows, cols = window
    top, left = max(0, row - halo), max(0, col - halo)
    bottom = min(size[0], row + rows + halo)
    right = min(size[1], col + cols + halo)
    piece = source.read((top, left, bottom - top, right - left))
    if np.isfinite(piece.bands).any():  # a window of no-data only is simply invalid
        validate.check_reflectance(
            piece.bands, piece.band_names, source.patch_id, scaled=None, name_empty_bands=False
        )
    piece = dataclasses.replace(piece, labels=None, transform=None)
    if not keep_s1 and piece.s1_bands is not None:
        piece = dataclasses.replace(piece, s1_bands=None, s1_dates=None, s1_band_names=())
    out = encode_patch(
        params, piece, mode=maps.mode, chunk_pixels=int(maps.chunk_pixels), progress=False
    )
    inner = np.s_[row - top : row - top + rows, col - left : col - left + cols]
    embeddings = np.concatenate([out[t][inner] for t in maps.towers], axis=-1)
    embeddings = embeddings.astype(np.float32)
    valid = np.all(np.isfinite(embeddings), axis=-1)
    if "valid" in out:
        valid &= out["valid"][inner]
    embeddings[~valid] = np.nan
    return embeddings, valid


def _stored(embeddings: np.ndarray, dtype: str) -> np.ndarray:
    """Embeddings as the partial file stores them (int8: round(127·x), -128 = no data)."""
    if dtype != "int8":
        return embeddings
    scaled = np.round(np.clip(np.nan_to_num(embeddings), -1.0, 1.0) * 127.0).astype(np.int8)
    return np.where(np.isnan(embeddings), np.int8(INT8_NODATA), scaled)


def _write_json(path: Path, value: Any) -> None:
    with cog.atomic_write(path) as temporary:
        temporary.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")


def encoder_tags(params: PIMCParams, source: EncoderSource, maps: ml_collections.ConfigDict):
    """The tags every map raster carries: where its embeddings came from."""
    return {
        "checkpoint": source.checkpoint or source.init_from,
        "step": "" if source.step is None else source.step,
        "init_from": source.init_from,
        "views": ",".join(params.spec.views),
        "towers": ",".join(maps.towers),
        "mode": maps.mode,
    }


def band_descriptions(params: PIMCParams, towers: Sequence[str]) -> list[str]:
    """``rp_00``, … for each embedding band, in tower order."""
    size = params.spec.embedding_dim
    return [f"{tower}_{index:02d}" for tower in towers for index in range(size)]


def _check_finished(paths: dict[str, Path], tags: dict[str, Any]) -> None:
    with rasterio.open(paths["embeddings"]) as src:
        found = src.tags()
    for key in ("checkpoint", "step", "views", "towers", "mode", "dtype"):
        if str(found.get(key, "")) != str(tags[key]):
            raise ValueError(
                f"{paths['embeddings']} holds embeddings with {key}={found.get(key)!r}, this "
                f"run makes {key}={tags[key]!r}; use another --workdir or delete the file"
            )


def _clear(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
        cog.temporary_path(path).unlink(missing_ok=True)
        cog.partial_path(path).unlink(missing_ok=True)


def embed_patch(
    params: PIMCParams,
    source: EncoderSource,
    patch_source: MapSource,
    folder: Path,
    maps: ml_collections.ConfigDict,
    keep_s1: bool = True,
) -> dict[str, Any]:
    """Writes one patch's outputs into ``folder``, resuming where a killed run stopped.

    Returns ``{"patch", "status" ("skipped" | "written"), "pixels", "seconds", "files"}``.
    """
    patch_id = patch_source.patch_id
    height, width = patch_source.size()
    corner = patch_source.read((0, 0, 1, 1))  # the georeference of the raster's corner
    if corner.crs is None or corner.transform is None:
        raise ValueError(
            f"patch {patch_id!r} has no georeference (crs and transform): read it from "
            "GeoTIFFs or give crs and transform in its .npz"
        )
    crs, transform = corner.crs, corner.transform
    paths = output_paths(folder, patch_id)
    tags = {**encoder_tags(params, source, maps), "dtype": maps.dtype, "patch": patch_id}
    finals = [paths["embeddings"], paths["valid"]] + ([paths["preview"]] if maps.preview else [])
    files = {
        key: str(paths[key])
        for key in ("embeddings", "valid", "preview")
        if maps.preview or key != "preview"
    }
    start = time.time()
    if all(path.is_file() for path in finals) and not paths["state"].is_file():
        _check_finished(paths, tags)
        return dict(patch=patch_id, status="skipped", pixels=0, seconds=0.0, files=files)
    halo = halo_pixels(params, maps.mode)
    descriptions = band_descriptions(params, maps.towers)
    signature = dict(
        tags=tags,
        height=height,
        width=width,
        bands=len(descriptions),
        halo=halo,
        window_size=int(maps.window_size),
        crs=str(crs),
        transform=list(transform),
    )
    partials = {key: cog.partial_path(paths[key]) for key in ("embeddings", "valid")}
    state = None
    if paths["state"].is_file() and all(p.is_file() for p in partials.values()):
        state = json.loads(paths["state"].read_text())
        if state.get("signature") != json.loads(json.dumps(signature)):
            logging.warning("%s: earlier partial work has other settings; starting over", patch_id)
            state = None
    if state is None:
        _clear(*finals, paths["state"])
        int8 = maps.dtype == "int8"
        grid = dict(
            height=height,
            width=width,
            crs=crs,
            transform=transform,
            block=int(maps.block_size),
        )
        cog.create_partial(
            partials["embeddings"],
            count=len(descriptions),
            dtype="int8" if int8 else "float32",
            nodata=INT8_NODATA if int8 else float("nan"),
            **grid,
        )
        cog.create_partial(partials["valid"], count=1, dtype="uint8", nodata=None, **grid)
        state = {"signature": signature, "done": []}
        _write_json(paths["state"], state)
    done = set(state["done"])
    grid_windows = windows(height, width, int(maps.window_size))
    todo = [(i, w) for i, w in enumerate(grid_windows) if i not in done]
    if done:
        logging.info("%s: resuming at window %d of %d", patch_id, len(done) + 1, len(grid_windows))
    pixels = 0
    bar = progress_lib.progress(todo, desc=f"Embedding {patch_id}", unit="window")
    for index, window in bar:
        embeddings, valid = embed_window(
            params, patch_source, (height, width), window, halo, maps, keep_s1
        )
        cog.write_window(partials["embeddings"], _stored(embeddings, maps.dtype), *window[:2])
        cog.write_window(partials["valid"], valid[..., None].astype(np.uint8), *window[:2])
        done.add(index)
        state["done"] = sorted(done)
        _write_json(paths["state"], state)
        pixels += window[2] * window[3]
    finish = dict(block=int(maps.block_size), keep_partial=True, tags=tags)
    cog.finish_cog(
        partials["valid"], paths["valid"], descriptions=["valid"], resampling="nearest", **finish
    )
    if maps.preview:
        size = int(maps.preview_max_size)
        values = cog.read_decimated(partials["embeddings"], size).astype(np.float32)
        if maps.dtype == "int8":
            values = np.where(values == INT8_NODATA, np.nan, values / 127.0)
        pca_preview(paths["preview"], values, cog.read_decimated(partials["valid"], size)[..., 0])
    cog.finish_cog(
        partials["embeddings"],
        paths["embeddings"],
        descriptions=descriptions,
        scales=[1.0 / 127.0] * len(descriptions) if maps.dtype == "int8" else None,
        half_float=maps.dtype == "float16",
        **finish,
    )
    for partial in partials.values():
        partial.unlink(missing_ok=True)
    paths["state"].unlink(missing_ok=True)
    seconds = time.time() - start
    return dict(patch=patch_id, status="written", pixels=pixels, seconds=seconds, files=files)


def embed_folder(
    config: ml_collections.ConfigDict, folder: Path
) -> tuple[PIMCParams, EncoderSource, list[MapSource], list[dict[str, Any]]]:
    """Embeds this process's share of the patches into ``folder`` (module docstring)."""
    check_maps(config.maps)
    sources = map_sources(config.data)
    params, encoder = load_map_encoder(config, sources)
    keep_s1 = check_s1_setting(config.data.get("s1", "none")) is not None
    folder.mkdir(parents=True, exist_ok=True)
    reports = []
    for source in progress_lib.progress(sources, desc="Patches", unit="patch"):
        report = embed_patch(params, encoder, source, folder, config.maps, keep_s1)
        if report["status"] == "written":
            rate = report["pixels"] / max(report["seconds"], 1e-9)
            logging.info(
                "%s: %d px, %.1f s (%.0f px/s) → %s",
                source.patch_id,
                report["pixels"],
                report["seconds"],
                rate,
                report["files"]["embeddings"],
            )
        else:
            logging.info("%s: already done (%s)", source.patch_id, report["files"]["embeddings"])
        reports.append(report)
    return params, encoder, sources, reports


def summary(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts, pixels, seconds and px/s of the patches written (skipped ones aside)."""
    written = [r for r in reports if r["status"] == "written"]
    pixels = sum(r["pixels"] for r in written)
    seconds = sum(r["seconds"] for r in written)
    return dict(
        patches=len(reports),
        written=len(written),
        skipped=len(reports) - len(written),
        pixels=pixels,
        seconds=round(seconds, 3),
        pixels_per_second=round(pixels / seconds, 1) if seconds else None,
    )


def run_embed(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """The ``embed`` task: writes ``WORKDIR/embeddings/`` and ``WORKDIR/embed.json``."""
    root = local_workdir(workdir)
    folder = root / EMBEDDINGS_DIR
    params, source, _, reports = embed_folder(config, folder)
    result = {
        "task": "embed",
        "init_from": source.init_from,
        "checkpoint": source.checkpoint,
        "step": source.step,
        "folder": str(folder),
        **summary(reports),
        "files": [r["files"] for r in reports],
    }
    if parallel.process_index() == 0:
        _write_json(root / "embed.json", result)
    rate = result["pixels_per_second"]
    logging.info(
        "Wrote the embeddings of %d patches (%d already done, %d px, %s px/s) to %s. Next: "
        "python launch.py --config=configs/classify_map.py --config.init_from=%s "
        "--config.embeddings_from=%s --config.data.path=%s --workdir=CLASSIFY_WORKDIR",
        result["written"],
        result["skipped"],
        result["pixels"],
        "n/a" if rate is None else f"{rate:.0f}",
        folder,
        config.init_from,
        root,
        config.data.path,
    )
    return result
