"""Figures from a workdir or a config: ``python -m pimc_jax.plot KIND --workdir=DIR``.

=============  ====================================  ==========================================
``KIND``       reads                                 draws (default file in the workdir)
=============  ====================================  ==========================================
``curves``     ``metrics.jsonl`` (pre-training)      every logged metric over steps
                                                     (``curves.png``)
``confusion``  ``results.json`` (classification)     confusion matrix, per-class F1
                                                     (``confusion.png``)
``forecast``   ``results.json`` (forecasting)        test windows, targets, each model's
                                                     forecast (``forecast_examples.png``)
``embeddings`` checkpoint + the run's data           a patch's dense embeddings of both towers
                                                     as PCA RGB maps beside its true colours
                                                     and labels (``embeddings.png``)
``plots``      the run's data and plot options       recurrence plots of a few pixels beside
                                                     their index series
                                                     (``recurrence_plots.png``)
``pairs``      a pre-training config                 sample pre-training pairs: image crop,
                                                     series and plots (``pairs.png``)
=============  ====================================  ==========================================

``--config=FILE[:VARIANTS]`` stands in for a workdir's config (``plots`` and ``pairs``
need no trained model: ``python -m pimc_jax.plot plots --config=configs/pretrain.py``);
``--out=FILE.png`` writes elsewhere. A workdir that lacks what a kind needs gives one
``FATAL: ...`` line and exit status 1.

This module is the command: it reads a workdir (or config) and hands arrays to the
figure library, :mod:`pimc_jax.figures` (pre-training figures) and
:mod:`pimc_jax.evaluation.figures` (the evaluations' figures); :func:`draw` is its entry
point. The arrays come from the library itself: :func:`pimc_jax.encode.encode_patch` for
embeddings, :class:`~pimc_jax.data.pairs.PairSampler` (built by
:func:`pimc_jax.train.build_pretraining`) for pairs. Nothing in the package imports this
module; it re-exports the figure library's names for the callers that use them from here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ml_collections
import numpy as np

from pimc_jax.checkpoint import checkpoint_steps, load_checkpoint, locate_checkpoint, read_meta
from pimc_jax.data import load_patches
from pimc_jax.data.patches import Patch
from pimc_jax.data.pipeline import step_rng
from pimc_jax.data.views import pad_series
from pimc_jax.encode import encode_patch
from pimc_jax.evaluation.figures import (
    CONFUSION_FILE,
    DEFAULT_DPI,
    FORECAST_FILE,
    confusion_figure,
    forecast_figure,
    save_figure,
)
from pimc_jax.figures import (  # noqa: F401 (clear_dates, pca_rgb, true_colour: re-exported)
    clear_dates,
    curves_figure,
    default_pixels,
    embeddings_figure,
    pairs_figure,
    pca_rgb,
    pixel_plots,
    read_metrics,
    recurrence_figure,
    true_colour,
)
from pimc_jax.indices import resolve_image_bands
from pimc_jax.launcher import load_config, user_error_line
from pimc_jax.models import ModelSpec
from pimc_jax.train import build_pretraining

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KINDS: tuple[str, ...] = ("curves", "confusion", "forecast", "embeddings", "plots", "pairs")
DEFAULT_FILES: dict[str, str] = {
    "curves": "curves.png",
    "confusion": CONFUSION_FILE,
    "forecast": FORECAST_FILE,
    "embeddings": "embeddings.png",
    "plots": "recurrence_plots.png",
    "pairs": "pairs.png",
}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def run_config(workdir: Path | None, config_path: str | None = None) -> ml_collections.ConfigDict:
    """The config behind a workdir: ``config_path`` when given, else the latest
    checkpoint's, ``config.json`` (pre-training) or ``results.json``'s (evaluation)."""
    if config_path:
        return load_config(config_path)
    if workdir is None:
        raise ValueError("pass --workdir=DIR or --config=FILE")
    if checkpoint_steps(workdir):
        config = read_meta(locate_checkpoint(workdir)).get("config")
        if config:
            return ml_collections.ConfigDict(config)
    if (workdir / "config.json").is_file():
        return ml_collections.ConfigDict(_read_json(workdir / "config.json"))
    if (workdir / "results.json").is_file():
        config = _read_json(workdir / "results.json").get("config")
        if config:
            return ml_collections.ConfigDict(config)
    raise FileNotFoundError(
        f"{workdir} holds no config (checkpoints/, config.json or results.json); pass --config=FILE"
    )


def _plot_spec(
    workdir: Path | None, config: ml_collections.ConfigDict, band_names: Sequence[str]
) -> ModelSpec:
    """The trained model's spec when the workdir has a checkpoint, else the config's."""
    if workdir is not None and checkpoint_steps(workdir):
        return ModelSpec.from_dict(read_meta(locate_checkpoint(workdir))["spec"])
    bands = resolve_image_bands(config.data.image_bands, band_names)
    return ModelSpec.from_config(
        config, band_names=band_names, image_mean=(0.0,) * len(bands), image_std=(1.0,) * len(bands)
    )


def _one_patch(config: ml_collections.ConfigDict, number: int) -> Patch:
    patches = load_patches(config.data, lazy=True)
    if not 0 <= number < len(patches):
        raise ValueError(f"--patch={number}: the run's data has patches 0..{len(patches) - 1}")
    return patches[number]


def _class_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    from pimc_jax.data.classes import PASTIS_CLASS_NAMES, SYNTHETIC_CLASS_NAMES

    return {"synthetic": SYNTHETIC_CLASS_NAMES, "pastis": PASTIS_CLASS_NAMES}.get(
        config.data.name, ()
    )


def _parse_pixels(text: str) -> list[tuple[int, int]]:
    """``"R,C;R,C"`` → ``[(R, C), (R, C)]``."""
    pixels = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        parts = item.split(",")
        if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise ValueError(f"--pixels wants ROW,COL;ROW,COL..., got {text!r}")
        pixels.append((int(parts[0]), int(parts[1])))
    if not pixels:
        raise ValueError(f"--pixels names no pixel: {text!r}")
    return pixels


def _results(workdir: Path | None, key: str, what: str) -> dict[str, Any]:
    if workdir is None:
        raise ValueError(f"{what} needs --workdir=DIR (an evaluation's workdir)")
    path = workdir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {what} needs an evaluation's workdir")
    results = _read_json(path)
    if not results.get(key):
        raise ValueError(f"{path} holds no {key!r}: {what} needs a newer evaluation run there")
    return results


def _draw_curves(workdir: Path | None, config_path: str | None) -> Figure:
    if workdir is None:
        raise ValueError("curves needs --workdir=DIR (a pre-training workdir)")
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: curves need a pre-training workdir")
    steps, metrics = read_metrics(path)
    if steps.size == 0:
        raise ValueError(f"{path} holds no logged step yet")
    chance = None
    try:
        batch = run_config(workdir, config_path).get("global_batch_size")
        chance = 1.0 / batch if batch else None
    except (FileNotFoundError, ValueError):
        pass
    return curves_figure(
        steps, metrics, chance=chance, title=f"Pre-training curves ({workdir.resolve().name})"
    )


def _draw_plots(
    workdir: Path | None,
    config_path: str | None,
    patch_number: int,
    pixels: str | None,
    num: int,
) -> Figure:
    config = run_config(workdir, config_path)
    patch = _one_patch(config, patch_number)
    spec = _plot_spec(workdir, config, patch.band_names)
    chosen = _parse_pixels(pixels) if pixels else default_pixels(patch, num)
    for row, col in chosen:
        if not (0 <= row < patch.height and 0 <= col < patch.width):
            raise ValueError(
                f"pixel ({row}, {col}) lies outside the {patch.height}×{patch.width} patch"
            )
    rows, cols = np.asarray(chosen).T
    series = np.swapaxes(patch.reflectance(np.s_[:, rows, cols, :]), 0, 1)
    padded = pad_series(series, patch.dates, int(config.data.max_dates))
    data = pixel_plots(spec, padded["bands"], padded["dates"], padded["mask"], patch.band_names)
    names = _class_names(config)
    titles = []
    for row, col in chosen:
        label = ""
        if patch.labels is not None:
            k = int(patch.labels[row, col])
            label = f", class {k}" + (f" ({names[k]})" if k < len(names) else "")
        titles.append(f"pixel ({row}, {col}) of patch {patch.patch_id!r}{label}")
    kinds = ", ".join(spec.rp_channels)
    return recurrence_figure(
        data,
        titles,
        title=f"Recurrence plots ({spec.rp_size} resampled steps; kinds: {kinds})",
    )


def _draw_embeddings(
    workdir: Path | None, config_path: str | None, patch_number: int, step: int | None
) -> Figure:
    if workdir is None:
        raise ValueError("embeddings needs --workdir=DIR (a pre-training workdir)")
    source = locate_checkpoint(workdir, step) if step is not None else workdir
    params, meta, _ = load_checkpoint(source)
    config = run_config(workdir, config_path)
    patch = _one_patch(config, patch_number)
    encoded = encode_patch(params, patch.reflectance(), patch.dates, patch.band_names)
    return embeddings_figure(
        patch,
        encoded,
        class_names=_class_names(config),
        title=f"Patch {patch.patch_id!r}: dense embeddings (checkpoint of step {meta['step']})",
    )


def _draw_pairs(workdir: Path | None, config_path: str | None, num: int) -> Figure:
    config = run_config(workdir, config_path)
    if config.get("task", "pretrain") != "pretrain":
        raise ValueError(
            f"pairs need a pre-training config, got task {config.task!r}; pass --config=FILE"
        )
    setup = build_pretraining(config)
    batch = setup.sampler.sample_batch(num, step_rng(int(config.seed), 1))
    data = pixel_plots(
        setup.spec, batch["bands"], batch["dates"], batch["mask"], setup.spec.band_names
    )
    return pairs_figure(
        batch,
        data,
        setup.sampler.image_bands,
        title=f"Pre-training pairs (image view: {config.data.image_date})",
    )


def make_figure(
    kind: str,
    *,
    workdir: str | Path | None = None,
    config: str | None = None,
    patch: int = 0,
    pixels: str | None = None,
    num: int | None = None,
    step: int | None = None,
) -> Figure:
    """Figure ``kind`` (module docstring) of a workdir or config, not yet written.

    Args:
      kind: one of :data:`KINDS`.
      workdir: the run's workdir.
      config: ``FILE[:VARIANTS]`` config file standing in for the workdir's config.
      patch: which patch of the run's data (``embeddings``, ``plots``).
      pixels: ``"ROW,COL;ROW,COL"`` (``plots``; default :func:`default_pixels`).
      num: number of pairs (``pairs``, default 6) or of default pixels (``plots``,
        default 3).
      step: checkpoint step (``embeddings``; default the latest intact one).

    Raises:
      FileNotFoundError, ValueError: one line naming what the workdir lacks.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown figure kind {kind!r}; choose one of {KINDS}")
    directory = Path(workdir) if workdir is not None else None
    if directory is not None and not directory.is_dir():
        raise FileNotFoundError(f"no workdir {directory}")
    if num is not None and num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    if kind == "curves":
        figure = _draw_curves(directory, config)
    elif kind == "confusion":
        results = _results(directory, "confusion_matrix", "confusion")
        figure = confusion_figure(
            np.asarray(results["confusion_matrix"]), results.get("class_names", ())
        )
    elif kind == "forecast":
        examples = _results(directory, "forecast_examples", "forecast")["forecast_examples"]
        figure = forecast_figure(
            np.asarray(examples["inputs"]),
            np.asarray(examples["targets"]),
            {m: np.asarray(v) for m, v in examples["predictions"].items()},
            examples["indices"],
        )
    elif kind == "embeddings":
        figure = _draw_embeddings(directory, config, patch, step)
    elif kind == "plots":
        figure = _draw_plots(directory, config, patch, pixels, num or 3)
    else:
        figure = _draw_pairs(directory, config, num or 6)
    return figure


def draw(
    kind: str,
    *,
    workdir: str | Path | None = None,
    out: str | Path | None = None,
    dpi: int = DEFAULT_DPI,
    **options: Any,
) -> Path:
    """Draws figure ``kind`` (:func:`make_figure`, which takes ``options``) as a PNG.

    Args:
      out: the PNG to write; default ``workdir/DEFAULT_FILES[kind]`` (that name in the
        current directory without a workdir).
      dpi: pixels per inch: the PNG is ``figsize × dpi`` pixels.

    Returns:
      The path written.
    """
    figure = make_figure(kind, workdir=workdir, **options)
    if out is None:
        out = Path(workdir or ".") / DEFAULT_FILES[kind]
    return save_figure(figure, out, dpi)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pimc_jax.plot KIND [--workdir=DIR] [--config=FILE] [--out=PNG] ...``.

    Returns:
      The exit status: 0, or 1 after one ``FATAL: ...`` line on stderr.
    """
    parser = argparse.ArgumentParser(
        prog="python -m pimc_jax.plot",
        description="Draws a figure from a pimc_jax workdir (or config) as a PNG.",
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--workdir", help="the run's workdir")
    parser.add_argument("--config", help="FILE[:VARIANTS] instead of the workdir's config")
    parser.add_argument("--out", help="PNG to write (default: WORKDIR/<kind's file>)")
    parser.add_argument("--patch", type=int, default=0, help="patch number (embeddings, plots)")
    parser.add_argument("--pixels", help="ROW,COL;ROW,COL (plots)")
    parser.add_argument(
        "--num", type=int, help="number of pairs (pairs: 6) or default pixels (plots: 3)"
    )
    parser.add_argument("--step", type=int, help="checkpoint step (embeddings)")
    parser.add_argument("--dpi", type=int, default=DEFAULT_DPI)
    args = parser.parse_args(argv)
    try:
        path = draw(
            args.kind,
            workdir=args.workdir,
            config=args.config,
            out=args.out,
            patch=args.patch,
            pixels=args.pixels,
            num=args.num,
            step=args.step,
            dpi=args.dpi,
        )
    except (FileNotFoundError, ValueError) as error:
        sys.stderr.write(user_error_line(error) + "\n")
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
