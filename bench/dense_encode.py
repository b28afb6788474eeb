"""Dense encoding throughput (px/s), fast-vs-exact agreement, and peak memory on a raster.

    python bench/dense_encode.py                      # all parts, default sizes
    python bench/dense_encode.py --parts=speed --layouts=default --repeats=2
    python bench/dense_encode.py --parts=memory --raster=1024

Parts (each setting runs in its own process, one after the other in this one run):

* ``speed``: :func:`pimc_jax.encode.encode_patch` on a synthetic ``--size`` patch, px/s
  per layout and mode (median and min–max over ``--repeats`` after one warm-up), beside
  ``baseline``: the same exact encoding with Flax's own ``GroupNorm`` and no
  project-set XLA flags (what the library did before). Layouts: ``default`` (the
  default towers), ``resnet18`` (four stages of two blocks, widths 16..128, 32×32 plots,
  32×32 crops of ten bands, as ``bench/train_step.py --vs-torch``) and ``paper`` (the
  same with the paper's widths 64..512). The larger layouts are timed on a
  ``--small`` patch and the ``fast`` mode of ``paper`` is left out (its receptive margin
  and full-resolution deep stages make it costlier than ``exact`` on a patch).
* ``agreement``: exact against fast on two synthetic patches, with a model pre-trained
  for ``--train-steps`` steps on the synthetic set (0: random initialisation): mean and
  5th-percentile cosine similarity of the image embeddings, and the accuracy of a
  logistic-regression probe on the patches' labels (fitted on one patch, scored on the
  other) for image embeddings from each mode and for exact-fitted/fast-scored.
* ``memory``: peak resident memory (``ru_maxrss``) of encoding a ``--raster`` square
  synthetic raster read from a memory-mapped ``.npy`` file with the default towers, in
  each mode, beside the size of the input and of the outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLAGS_ENV = "PIMC_BENCH_BASELINE"

_TEN_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")


def _spec(layout: str):
    from pimc_jax.models import EncoderSpec, ModelSpec

    if layout == "default":
        return ModelSpec()
    if layout == "valid":  # the default layout without padding inside 17-pixel crops
        spec = ModelSpec()
        encoder = dataclasses.replace(spec.image_encoder, padding="valid")
        return dataclasses.replace(spec, image_encoder=encoder, crop_size=17)
    widths = (16, 32, 64, 128) if layout == "resnet18" else (64, 128, 256, 512)
    groups = 8 if layout == "resnet18" else 32
    encoder = EncoderSpec(
        stage_sizes=(2, 2, 2, 2), widths=widths, stem_width=widths[0], norm_groups=groups
    )
    return ModelSpec(
        rp_encoder=encoder,
        image_encoder=encoder,
        rp_size=32,
        crop_size=32,
        image_bands=_TEN_BANDS,
        image_mean=(0.0,) * 10,
        image_std=(1.0,) * 10,
    )


def _image_channels(patch, spec) -> list[int]:
    from pimc_jax.indices import canonical_band_name

    names = [canonical_band_name(n) for n in patch.band_names]
    return [names.index(canonical_band_name(b)) for b in spec.image_bands]


def _use_flax_groupnorm() -> None:
    """The previous implementation: Flax's GroupNorm in the towers."""
    import flax.linen as nn

    import pimc_jax.models as models

    models.GroupNorm = nn.GroupNorm


def _encode_module():
    import importlib

    return importlib.import_module("pimc_jax.encode")


def _speed(layout: str, mode: str, size: int, repeats: int) -> dict:
    import numpy as np

    from pimc_jax.data.synthetic import make_patch
    from pimc_jax.data.views import extract_crops, median_composite
    from pimc_jax.models import init_params

    encode = _encode_module()
    spec = _spec(layout)
    params = init_params(spec, 0)
    patch = make_patch(0, 0, size=size)
    run = lambda: encode.encode_patch(params, patch, progress=False, mode=mode)
    run()  # compilation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    pixels = size * size
    # The image view alone, as encode_patch computes it for this tower and mode.
    composite = median_composite(patch.reflectance()[..., _image_channels(patch, spec)])
    if spec.image_encoder.padding == "valid":
        image = lambda: encode.dense_view(params, composite, 1, 16384)
    elif mode == "fast":
        image = lambda: encode._fast_image(params, composite, 16384)
    else:
        rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        centers = np.stack([rows.ravel(), cols.ravel()], axis=1)
        crops = extract_crops(composite, centers, spec.crop_size)
        image = lambda: encode.encode(params, {"image": crops}, progress=False)
    image()
    image_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        image()
        image_times.append(time.perf_counter() - start)
    return {
        "image_s": float(np.median(image_times)),
        "pixels": pixels,
        "median_s": float(np.median(times)),
        "px_per_s": pixels / float(np.median(times)),
        "px_per_s_min": pixels / max(times),
        "px_per_s_max": pixels / min(times),
        "margin": encode.dense_margin(spec) if mode == "fast" else 0,
    }


def _train(steps: int, workdir: str):
    """A model pre-trained for ``steps`` steps on the default synthetic set."""
    from pimc_jax.checkpoint import load_params
    from pimc_jax.launcher import load_config
    from pimc_jax.train import pretrain

    config = load_config(ROOT / "configs/pretrain.py")
    config.total_steps = steps
    config.checkpoint_every_steps = steps
    config.log_every_steps = steps
    config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, steps // 3)
    pretrain(config, workdir)
    return load_params(workdir)


def _agreement(size: int, train_steps: int) -> dict:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from pimc_jax.data.synthetic import make_patch
    from pimc_jax.models import init_params

    encode = _encode_module()
    if train_steps:
        with tempfile.TemporaryDirectory() as workdir:
            params = _train(train_steps, workdir)
    else:
        params = init_params(_spec("default"), 0)
    patches = [make_patch(7, index, size=size) for index in range(2)]
    out = {
        mode: [encode.encode_patch(params, p, progress=False, mode=mode) for p in patches]
        for mode in ("exact", "fast")
    }
    exact = np.concatenate([o["image"].reshape(-1, o["image"].shape[-1]) for o in out["exact"]])
    fast = np.concatenate([o["image"].reshape(-1, o["image"].shape[-1]) for o in out["fast"]])
    cosine = np.sum(exact * fast, 1) / (
        np.linalg.norm(exact, axis=1) * np.linalg.norm(fast, axis=1) + 1e-12
    )
    labels = [p.labels.reshape(-1) for p in patches]

    def probe(fit: str, score: str) -> float:
        x_fit = out[fit][0]["image"].reshape(labels[0].size, -1)
        x_score = out[score][1]["image"].reshape(labels[1].size, -1)
        model = LogisticRegression(max_iter=2000).fit(x_fit, labels[0])
        return float(model.score(x_score, labels[1]))

    return {
        "train_steps": train_steps,
        "pixels": int(exact.shape[0]),
        "classes": int(len(np.unique(np.concatenate(labels)))),
        "cos_mean": float(cosine.mean()),
        "cos_p05": float(np.percentile(cosine, 5)),
        "cos_min": float(cosine.min()),
        "probe_exact": probe("exact", "exact"),
        "probe_fast": probe("fast", "fast"),
        "probe_exact_fit_fast_score": probe("exact", "fast"),
    }


def _memory(size: int, mode: str, chunk_pixels: int) -> dict:
    import numpy as np

    from pimc_jax.data.synthetic import make_patch
    from pimc_jax.models import init_params

    encode = _encode_module()
    params = init_params(_spec("default"), 0)
    tile = make_patch(0, 0, size=128)
    reps = -(-size // 128)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "raster.npy")
        raster = np.lib.format.open_memmap(
            path, "w+", np.float32, (tile.num_dates, size, size, tile.bands.shape[-1])
        )
        for row in range(reps):  # a mosaic of one synthetic patch, written tile by tile
            for col in range(reps):
                rows = slice(row * 128, min(size, (row + 1) * 128))
                cols = slice(col * 128, min(size, (col + 1) * 128))
                # Scaled per tile, so that no two pixels repeat (repeats are embedded once).
                factor = np.float32(1.0 + 1e-3 * (row * reps + col))
                part = tile.bands[:, : rows.stop - rows.start, : cols.stop - cols.start]
                raster[:, rows, cols] = part * factor
        raster.flush()
        del raster
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        bands = np.load(path, mmap_mode="r")
        start = time.perf_counter()
        out = encode.encode_patch(
            params,
            bands,
            tile.dates,
            tile.band_names,
            progress=False,
            mode=mode,
            chunk_pixels=chunk_pixels,
        )
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "size": size,
        "input_mb": bands.nbytes / 2**20,
        "output_mb": sum(v.nbytes for v in out.values()) / 2**20,
        "rss_before_mb": before / 1024,
        "peak_rss_mb": peak / 1024,
        "seconds": seconds,
        "px_per_s": size * size / seconds,
    }


def _child(args: argparse.Namespace) -> dict:
    if os.environ.get(FLAGS_ENV):
        _use_flax_groupnorm()
    if args.child == "speed":
        return _speed(args.layout, args.mode, args.child_size, args.repeats)
    if args.child == "agreement":
        return _agreement(args.size, args.train_steps)
    return _memory(args.raster, args.mode, args.chunk_pixels)


def _run(args: argparse.Namespace, extra: list[str], baseline: bool = False) -> dict:
    env = dict(os.environ)
    if baseline:
        env[FLAGS_ENV] = "1"
        env["PIMC_JAX_XLA_CPU_FLAGS"] = "0"
    command = [sys.executable, __file__, f"--repeats={args.repeats}", f"--size={args.size}"]
    command += [f"--train-steps={args.train_steps}", f"--raster={args.raster}"]
    command += [f"--chunk-pixels={args.chunk_pixels}", *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        sys.exit(f"{extra} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.split("RESULT", 1)[1])


def _print_speed(args: argparse.Namespace) -> None:
    print(f"\n## speed: px/s of encode_patch, median (min–max) over {args.repeats} runs")
    print(
        f"{'layout':>9} {'mode':>9} {'patch':>8} {'px/s':>9} {'min–max':>15} {'margin':>7} "
        f"{'image s':>8}"
    )
    rows: dict[tuple[str, str], dict] = {}
    for layout in args.layouts.split(","):
        size = args.size if layout in ("default", "valid") else args.small
        modes = ["baseline", "exact"] + (["fast"] if layout != "paper" else [])
        if layout == "valid":  # one computation: the exact dense pass
            modes = ["exact"]
        for mode in modes:
            extra = ["--child=speed", f"--layout={layout}", f"--child-size={size}"]
            extra.append(f"--mode={'exact' if mode == 'baseline' else mode}")
            r = _run(args, extra, baseline=mode == "baseline")
            rows[layout, mode] = r
            spread = f"{r['px_per_s_min']:.0f}–{r['px_per_s_max']:.0f}"
            print(
                f"{layout:>9} {mode:>9} {size:>4}x{size:<3} {r['px_per_s']:>9.0f} {spread:>15} "
                f"{r['margin']:>7} {r['image_s']:>8.3f}"
            )
        if layout == "valid":
            r = rows[layout, "exact"]
            print(
                f"seconds per {size}x{size} patch (valid, exact dense): "
                f"{size**2 / r['px_per_s']:.2f}"
            )
            if ("default", "exact") in rows:
                d = rows["default", "exact"]
                print(
                    f"valid/default exact: px/s {r['px_per_s'] / d['px_per_s']:.2f}x, image view "
                    f"alone {d['image_s'] / r['image_s']:.1f}x faster "
                    f"({d['image_s']:.3f} s -> {r['image_s']:.3f} s)"
                )
            continue
        base = rows[layout, "baseline"]["px_per_s"]
        for mode in modes[1:]:
            ratio = rows[layout, mode]["px_per_s"] / base
            print(f"px/s ratio {mode}/baseline ({layout}): {ratio:.2f}x")
        if layout == "default":
            for mode in modes:
                seconds = args.size**2 / rows[layout, mode]["px_per_s"]
                print(f"seconds per {args.size}x{args.size} patch ({mode}): {seconds:.2f}")


def _print_agreement(args: argparse.Namespace) -> None:
    r = _run(args, ["--child=agreement"])
    print(
        f"\n## agreement, fast vs exact image embeddings: {r['pixels']} pixels of two "
        f"{args.size}x{args.size} patches, {r['classes']} classes, model trained "
        f"{r['train_steps']} steps"
    )
    print(
        f"cosine similarity: mean {r['cos_mean']:.4f}, 5th percentile {r['cos_p05']:.4f}, "
        f"min {r['cos_min']:.4f}"
    )
    print(
        f"probe accuracy (fit patch 1, score patch 2): exact {r['probe_exact']:.3f}, "
        f"fast {r['probe_fast']:.3f}, exact-fitted on fast {r['probe_exact_fit_fast_score']:.3f}"
    )


def _print_memory(args: argparse.Namespace) -> None:
    print(f"\n## memory: {args.raster}x{args.raster} raster, chunk_pixels={args.chunk_pixels}")
    print(f"{'mode':>6} {'input MB':>9} {'output MB':>10} {'peak RSS MB':>12} {'s':>7} {'px/s':>7}")
    for mode in args.modes.split(","):
        r = _run(args, ["--child=memory", f"--mode={mode}"])
        print(
            f"{mode:>6} {r['input_mb']:>9.0f} {r['output_mb']:>10.0f} {r['peak_rss_mb']:>12.0f} "
            f"{r['seconds']:>7.0f} {r['px_per_s']:>7.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="speed,agreement,memory")
    parser.add_argument("--layouts", default="default,resnet18,paper")
    parser.add_argument("--modes", default="exact,fast", help="modes of the memory part")
    parser.add_argument("--size", type=int, default=128, help="patch side (default layout)")
    parser.add_argument("--small", type=int, default=32, help="patch side (larger layouts)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--raster", type=int, default=1024)
    parser.add_argument("--chunk-pixels", type=int, default=16384)
    parser.add_argument("--child", choices=("speed", "agreement", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--layout", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="exact", help=argparse.SUPPRESS)
    parser.add_argument("--child-size", type=int, default=128, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT", json.dumps(_child(args)))
        return
    import jax

    print(f"platform: {jax.devices()[0].platform}  cores: {os.cpu_count()}")
    parts: dict[str, Any] = {
        "speed": _print_speed,
        "agreement": _print_agreement,
        "memory": _print_memory,
    }
    for part in args.parts.split(","):
        parts[part](args)


if __name__ == "__main__":
    from pimc_jax import parallel

    parallel.set_xla_cpu_flags()  # before JAX starts its backends
    main()
