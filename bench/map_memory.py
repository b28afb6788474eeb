"""Peak memory and speed of the ``embed`` map task's windows on large GeoTIFF rasters.

    python bench/map_memory.py [--sizes 1024,4096] [--dates 24] [--windows 2]
        [--window_size 256] [--folder /tmp/map_memory]

For each size ``S`` it writes (once, window by window, so the writer stays small) a folder
of dated GeoTIFFs ``S × S`` pixels × ``--dates`` dates × 4 bands (B2 B3 B4 B8, int16
digital numbers with ``scale`` 0.0001, smooth random fields), then in a fresh child
process runs what ``python launch.py --config=configs/embed.py`` runs per window on the
first ``--windows`` windows: :func:`pimc_jax.maps.embed.embed_window` (the window and its
halo read from the files, both towers of the default model at random init) and
:func:`pimc_jax.maps.cog.write_window` into a partial COG of the whole raster. It prints
one markdown row per size: pixels embedded, seconds, px/s, the child's peak resident
memory (``ru_maxrss``), the raster's size in memory were it read whole (float32
reflectance, as :func:`pimc_jax.data.user.load_patch_folder` holds it), and the time a
10 980 × 10 980 Sentinel-2 tile would take at that rate. Equal peaks for different sizes
show that memory depends on the window, not on the raster.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BANDS = ("B2", "B3", "B4", "B8")
TILE = 10_980


def write_folder(folder: Path, size: int, dates: int, block: int = 512) -> Path:
    """``folder/big/<date>.tif``: ``size²`` px, 4 int16 bands per date (skipped if present)."""
    import rasterio
    from rasterio.transform import from_origin

    patch = folder / "big"
    done = patch / ".complete"
    if done.is_file() and json.loads(done.read_text()) == [size, dates]:
        return folder
    patch.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps({"scale": 0.0001, "nodata": -9999}))
    rng = np.random.default_rng(0)
    # One smooth field per band, tiled over the raster; a seasonal cycle over the dates.
    base = rng.uniform(0.02, 0.3, (len(BANDS), block, block)).astype(np.float32)
    profile = dict(
        driver="GTiff",
        height=size,
        width=size,
        count=len(BANDS),
        dtype="int16",
        crs="EPSG:32631",
        transform=from_origin(500_000.0, 5_000_000.0, 10.0, 10.0),
        nodata=-9999,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    for t in range(dates):
        day = np.datetime64("2021-01-01") + int(t * 365 / dates)
        season = 1.0 + 0.5 * np.sin(2 * np.pi * t / dates)
        with rasterio.open(patch / f"{day}.tif", "w", **profile) as dst:
            for band, name in enumerate(BANDS, start=1):
                dst.set_band_description(band, name)
            for row in range(0, size, block):
                for col in range(0, size, block):
                    rows, cols = min(block, size - row), min(block, size - col)
                    values = (base[:, :rows, :cols] * season * 10_000).astype(np.int16)
                    dst.write(values, window=rasterio.windows.Window(col, row, cols, rows))
    done.write_text(json.dumps([size, dates]))
    return folder


def child(folder: str, windows: int, window_size: int) -> dict:
    """Embeds the first ``windows`` windows (module docstring); returns the measurements."""
    import resource
    import time

    import ml_collections

    from pimc_jax import parallel

    parallel.set_xla_cpu_flags()
    from pimc_jax.data.user import patch_sources
    from pimc_jax.indices import resolve_indices
    from pimc_jax.maps import cog
    from pimc_jax.maps.embed import band_descriptions, embed_window, halo_pixels
    from pimc_jax.models import init_params
    from pimc_jax.spec import ModelSpec

    (source,) = patch_sources(folder)
    height, width = source.size()
    corner = source.read((0, 0, 1, 1))
    spec = ModelSpec(band_names=BANDS, indices=resolve_indices("auto", BANDS))
    params = init_params(spec, 0)
    maps = ml_collections.ConfigDict(
        dict(towers=("rp", "image"), mode="exact", chunk_pixels=16384, window_size=window_size)
    )
    partial = Path(folder).parent / f"{Path(folder).name}.embeddings.partial.tif"
    partial.unlink(missing_ok=True)
    cog.create_partial(
        partial,
        height=height,
        width=width,
        count=len(band_descriptions(params, maps.towers)),
        dtype="float32",
        crs=corner.crs,
        transform=corner.transform,
        nodata=float("nan"),
    )
    halo = halo_pixels(params, maps.mode)
    grid = [
        (row, col, min(window_size, height - row), min(window_size, width - col))
        for row in range(0, height, window_size)
        for col in range(0, width, window_size)
    ][:windows]
    # The first window compiles; it is timed apart.
    start = time.perf_counter()
    embeddings, _ = embed_window(params, source, (height, width), grid[0], halo, maps)
    cog.write_window(partial, embeddings, *grid[0][:2])
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    pixels = 0
    for window in grid[1:]:
        embeddings, _ = embed_window(params, source, (height, width), window, halo, maps)
        cog.write_window(partial, embeddings, *window[:2])
        pixels += window[2] * window[3]
    seconds = time.perf_counter() - start
    partial.unlink(missing_ok=True)
    return dict(
        size=height,
        pixels=pixels,
        seconds=seconds,
        first_window_seconds=compile_seconds,
        peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1024,4096")
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--windows", type=int, default=3, help="windows embedded per size")
    parser.add_argument("--window_size", type=int, default=256)
    parser.add_argument("--folder", default="/tmp/map_memory")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.windows, args.window_size)))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        folder = write_folder(Path(args.folder) / str(size), size, args.dates)
        command = [sys.executable, __file__, f"--child={folder}", f"--windows={args.windows}"]
        command.append(f"--window_size={args.window_size}")
        done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"{args.dates} dates × {len(BANDS)} bands, windows of {args.window_size} px "
        f"(the first, compiling, not timed), default towers at random init\n"
    )
    print("| raster | px embedded | s | px/s | peak RSS | raster read whole | 10 980² tile |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        rate = row["pixels"] / max(row["seconds"], 1e-9)
        whole_gb = row["size"] ** 2 * args.dates * len(BANDS) * 4 / 1e9
        tile_hours = TILE**2 / rate / 3600
        print(
            f"| {row['size']}² | {row['pixels']:,} | {row['seconds']:.1f} | {rate:,.0f} | "
            f"{row['peak_mb']:,.0f} MB | {whole_gb:.1f} GB | {tile_hours:.1f} h |"
        )


if __name__ == "__main__":
    main()
