"""The ``classify_map`` task: labels + embeddings → a pixel classifier → class-map COGs.

``python launch.py --config=configs/classify_map.py --config.init_from=PRETRAIN_WORKDIR
--config.data.path=DIR --workdir=OUT``:

1. embeds every patch of ``DIR`` as ``embed`` does (:mod:`pimc_jax.maps.embed`) into
   ``OUT/embeddings/`` (resumable), or reads the COGs of an ``embed`` workdir given as
   ``embeddings_from``;
2. takes the labelled pixels of the patches' labels rasters (``Patch.labels``; values in
   ``classifier.ignore_labels`` are unlabelled; pixels without a usable acquisition are
   left out) and splits them by square blocks of ``classifier.block_size`` pixels: a
   seeded ``classifier.test_fraction`` of the labelled blocks is held out, so test pixels
   never sit beside training pixels of the same field;
3. fits the classifier (:mod:`pimc_jax.maps.classifiers`: by default extra trees on
   the embeddings and each pixel's raw band series, ``classifier.model=linear`` a logistic
   regression on the embeddings) on the other blocks, scores it on the held-out ones
   (accuracy, macro-F1, per class), then (``classifier.refit_all``) refits it on every
   labelled pixel and saves it as ``OUT/classifier.joblib`` (or ``classifier.npz``) with
   the class codes, names and colours and the features and checkpoint it expects;
4. writes per patch ``OUT/maps/ID.classes.tif`` (class codes, a colour table by class
   rank, class names in the tags) and ``OUT/maps/ID.probabilities.tif`` (one band per
   class, described by its name), both COGs on the patch's grid, ``OUT/class_map.png``
   and ``OUT/results.json`` / ``results.md`` (:mod:`pimc_jax.evaluation.results`).

``classifier_from=OTHER/classifier.joblib`` skips 2–3: the saved classifier maps this
folder (labels, if any, are scored as a whole, not a held-out split).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import rasterio
from absl import logging

from pimc_jax import parallel
from pimc_jax import progress as progress_lib
from pimc_jax.data import load_patches
from pimc_jax.data.patches import Patch
from pimc_jax.data.user import read_class_table
from pimc_jax.evaluation.encoders import EncoderSource
from pimc_jax.evaluation.results import write_results
from pimc_jax.evaluation.scores import classification_metrics, confusion_matrix
from pimc_jax.maps import cog
from pimc_jax.maps.classifiers import (
    TREE_MODELS,
    check_settings,
    fit_classifier,
    load_classifier,
    probabilities,
    save_classifier,
    series_setting,
)
from pimc_jax.maps.embed import (
    EMBEDDINGS_DIR,
    INT8_NODATA,
    check_maps,
    embed_folder,
    local_workdir,
    output_paths,
)
from pimc_jax.maps.preview import class_colours, class_map_figure

MAPS_DIR = "maps"
FIGURE = "class_map.png"


def read_embeddings(folder: Path, patch_id: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(H, W, D)`` float32 embeddings (NaN = invalid), ``(H, W)`` valid and the tags and
    band descriptions of one patch's ``embed`` outputs."""
    paths = output_paths(folder, patch_id)
    if not paths["embeddings"].is_file() or not paths["valid"].is_file():
        raise FileNotFoundError(
            f"no embeddings of patch {patch_id!r} in {folder} (run configs/embed.py with the "
            "same data.path and that workdir, or leave embeddings_from empty)"
        )
    with rasterio.open(paths["embeddings"]) as src:
        values = np.moveaxis(src.read(), 0, -1)
        facts = {"tags": src.tags(), "descriptions": list(src.descriptions)}
    if values.dtype == np.int8:
        values = np.where(values == INT8_NODATA, np.nan, values / np.float32(127.0))
    with rasterio.open(paths["valid"]) as src:
        valid = src.read(1).astype(bool)
    values = values.astype(np.float32)
    valid &= np.all(np.isfinite(values), axis=-1)
    return values, valid, facts


def class_names(config: ml_collections.ConfigDict, codes: Sequence[int]) -> list[str]:
    """Names of ``codes``: ``classifier.class_names`` ("code:name"), else the data folder's
    ``classes.json`` (``{"code": "name"}``), else ``class <code>``."""
    table = read_class_table(config.data.path)
    for entry in config.classifier.class_names:
        code, sep, name = str(entry).partition(":")
        if not sep or not code.strip().lstrip("-").isdigit():
            raise ValueError(f"classifier.class_names entries are 'code:name', got {entry!r}")
        table[int(code)] = name.strip()
    return [table.get(int(code), f"class {int(code)}") for code in codes]


def block_split(
    labelled: Sequence[np.ndarray], block_size: int, test_fraction: float, seed: int
) -> list[np.ndarray]:
    """Per patch, ``(H, W)`` bool: True for labelled pixels of held-out blocks.

    Blocks are the ``block_size`` squares of each patch holding a labelled pixel; a seeded
    ``test_fraction`` of them (at least one, and never all) is held out.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"classifier.test_fraction must lie in (0, 1), got {test_fraction}")
    ids = [_block_ids(mask.shape, block_size) for mask in labelled]
    keys = [
        (i, int(b))
        for i, (m, b) in enumerate(zip(labelled, ids, strict=True))
        for b in np.unique(b[m])
    ]
    if len(keys) < 2:
        raise ValueError(
            f"the labelled pixels lie in {len(keys)} block(s) of {block_size} px: a held-out "
            "split needs at least 2; lower classifier.block_size or label more of the area"
        )
    count = min(len(keys) - 1, max(1, round(test_fraction * len(keys))))
    chosen = np.random.default_rng(seed).choice(len(keys), size=count, replace=False)
    held = [[b for i, b in (keys[k] for k in chosen) if i == index] for index in range(len(ids))]
    return [m & np.isin(b, h) for m, b, h in zip(labelled, ids, held, strict=True)]


def _block_ids(shape: tuple[int, ...], block_size: int) -> np.ndarray:
    """``(H, W)`` int64: the index of each pixel's ``block_size`` square, row-major."""
    rows, cols = np.indices(shape)
    per_row = -(-shape[1] // block_size) if len(shape) == 2 else 1
    return (rows // block_size) * per_row + cols // block_size


def labelled_pixels(patch: Patch, valid: np.ndarray, ignore: Sequence[int]) -> np.ndarray:
    """``(H, W)`` bool: pixels with a label not in ``ignore`` and a valid embedding."""
    if patch.labels is None:
        return np.zeros((patch.height, patch.width), bool)
    return ~np.isin(patch.labels, list(ignore)) & valid


def series_shapes(patches: Sequence[Patch]) -> list[tuple[int, int]]:
    """The distinct ``(T, C)``, dates and bands, of the patches (what ``classifier.series``
    reads), sorted."""
    return sorted({(p.num_dates, len(p.band_names)) for p in patches})


def use_series(settings: ml_collections.ConfigDict, patches: Sequence[Patch]) -> list[int]:
    """The ``[T, C]`` raw series a new classifier reads beside the embeddings, ``[]`` for
    none: ``classifier.series`` ``"true"`` (ValueError, one line, when the patches
    differ), ``"auto"`` (when they do not) or ``"false"``; the linear model reads the
    embeddings only."""
    setting = series_setting(settings)
    if settings.model not in TREE_MODELS or setting == "false":
        return []
    shapes = series_shapes(patches)
    if len(shapes) > 1 and setting == "true":
        raise ValueError(
            f"classifier.series=true reads each pixel's raw series, but the patches hold "
            f"different numbers of dates and bands {shapes}: set classifier.series=auto or "
            "false (embeddings only), or give one kind of patch per run"
        )
    return list(shapes[0]) if len(shapes) == 1 else []


def pixel_features(patch: Patch, embeddings: np.ndarray, series: bool) -> np.ndarray:
    """``(H, W, D [+ T·C])`` float32: the embeddings and, with ``series``, the pixel's raw
    band series (reflectance, NaN = no data) beside them."""
    if not series:
        return embeddings
    raw = np.moveaxis(patch.reflectance(), 0, 2).reshape(patch.height, patch.width, -1)
    return np.concatenate([embeddings, raw.astype(np.float32)], axis=-1)


def _class_dtype(codes: Sequence[int]) -> tuple[str, int]:
    if min(codes) < 0 or max(codes) >= 65535:
        raise ValueError(f"class codes must lie in 0..65534 for a class map, got {list(codes)}")
    return ("uint8", 255) if max(codes) < 255 else ("uint16", 65535)


def write_class_maps(
    folder: Path,
    patch: Patch,
    probs: np.ndarray,
    valid: np.ndarray,
    facts: dict[str, Any],
    tags: dict[str, Any],
    maps: ml_collections.ConfigDict,
) -> tuple[dict[str, str], np.ndarray]:
    """Writes ``ID.classes.tif`` and ``ID.probabilities.tif``; returns their paths and the
    ``(H, W)`` class ranks (-1 where invalid)."""
    codes = np.asarray(facts["codes"])
    dtype, nodata = _class_dtype(facts["codes"])
    ranks = np.where(valid, np.argmax(probs, axis=-1), -1)
    classes = np.where(ranks >= 0, codes[np.maximum(ranks, 0)], nodata).astype(dtype)
    probs = np.where(valid[..., None], probs, np.nan).astype(np.float32)
    colours = class_colours(len(codes))
    colormap = {int(code): colours[rank] for rank, code in enumerate(codes)}
    colormap[nodata] = (0, 0, 0, 0)
    names = json.dumps(dict(zip([str(c) for c in codes], facts["names"], strict=True)))
    tags = {**tags, "class_names": names}
    grid = (patch.crs, patch.transform)
    paths = {
        "classes": folder / f"{patch.patch_id}.classes.tif",
        "probabilities": folder / f"{patch.patch_id}.probabilities.tif",
    }
    block = int(maps.block_size)
    cog.write_cog(
        paths["classes"],
        classes,
        *grid,
        nodata=nodata,
        descriptions=["class"],
        tags=tags,
        colormap=colormap,
        resampling="nearest",
        block=block,
    )
    cog.write_cog(
        paths["probabilities"],
        probs,
        *grid,
        descriptions=facts["names"],
        tags=tags,
        half_float=maps.dtype == "float16",
        block=block,
    )
    return {key: str(path) for key, path in paths.items()}, ranks


def _scores(
    ranks: np.ndarray, predicted: np.ndarray, codes: Sequence[int], names: list[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 and the per-class table, classes named by their codes."""
    scores = classification_metrics(confusion_matrix(ranks, predicted, len(names)), names)
    for row in scores["per_class"]:
        row["class"] = int(codes[int(row["class"])])
    return scores


def run_classify_map(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """The ``classify_map`` task (module docstring); returns the results written."""
    if parallel.process_count() > 1:
        raise ValueError("classify_map runs on one process; run embed on many, then this")
    check_maps(config.maps)
    if not config.classifier_from:
        check_settings(config.classifier)
    root = local_workdir(workdir)
    root.mkdir(parents=True, exist_ok=True)
    if config.embeddings_from:
        folder = local_workdir(config.embeddings_from) / EMBEDDINGS_DIR
        patches = load_patches(config.data)
        source = None
    else:
        folder = root / EMBEDDINGS_DIR
        _, source, _, _ = embed_folder(config, folder)
        patches = load_patches(config.data)  # whole: the class maps are fitted and written whole
    loaded = {p.patch_id: read_embeddings(folder, p.patch_id) for p in patches}
    first_facts = loaded[patches[0].patch_id][2]
    if source is None:
        tags = first_facts["tags"]
        step = tags.get("step")
        source = EncoderSource(
            tags.get("init_from", ""), tags.get("checkpoint"), int(step) if step else None
        )
    bands = [str(d) for d in first_facts["descriptions"]]
    ignore = [int(v) for v in config.classifier.ignore_labels]
    labelled = [labelled_pixels(p, loaded[p.patch_id][1], ignore) for p in patches]
    results: dict[str, Any] = {
        "task": "classify_map",
        "init_from": source.init_from,
        "checkpoint": source.checkpoint,
        "step": source.step,
    }
    if config.classifier_from:
        model, facts = load_classifier(config.classifier_from)
        if facts["bands"] != bands:
            raise ValueError(
                f"{config.classifier_from} was fitted on embedding bands {facts['bands'][:3]}…, "
                f"these embeddings have {bands[:3]}…: embed with the classifier's checkpoint"
            )
        if facts["checkpoint"] != str(source.checkpoint or source.init_from):
            logging.warning(
                "%s was fitted on embeddings of %s, these come from %s",
                config.classifier_from,
                facts["checkpoint"],
                source.checkpoint,
            )
        shape = facts["series"]
        found = series_shapes(patches)
        if shape and found != [tuple(shape)]:
            raise ValueError(
                f"{config.classifier_from} reads raw series of {shape[0]} dates x {shape[1]} "
                f"bands beside the embeddings, these patches hold {found} (dates, bands): map "
                "patches like those it was fitted on, or refit with classifier.series=False"
            )
        results["protocol"] = f"saved classifier {config.classifier_from}"
        classifier_path = Path(config.classifier_from)
    else:
        if not any(mask.any() for mask in labelled):
            raise ValueError(
                f"no labelled pixel in {config.data.path}: add a labels raster (labels.tif in "
                f"a GeoTIFF patch folder, labels in an .npz; values {tuple(ignore)} are "
                "unlabelled), or map with a saved classifier (classifier_from)"
            )
        codes = sorted(
            {
                int(c)
                for p, m in zip(patches, labelled, strict=True)
                if m.any()
                for c in np.unique(p.labels[m])
            }
        )
        names = class_names(config, codes)
        c = config.classifier
        shape = use_series(c, patches)
        held = block_split(labelled, int(c.block_size), float(c.test_fraction), int(c.seed))
        x_parts, y_parts, test_parts = [], [], []
        for patch, mask, test in zip(patches, labelled, held, strict=True):
            x_parts.append(pixel_features(patch, loaded[patch.patch_id][0], bool(shape))[mask])
            y_parts.append(np.searchsorted(codes, patch.labels[mask]))
            test_parts.append(test[mask])
        x, y, is_test = (np.concatenate(v) for v in (x_parts, y_parts, test_parts))
        keep = _cap_per_class(y, int(c.max_pixels_per_class), int(c.seed))
        x, y, is_test = x[keep], y[keep], is_test[keep]
        logging.info(
            "Fitting on %d labelled pixels (%d held out in %d-px blocks), %d classes",
            int((~is_test).sum()),
            int(is_test.sum()),
            int(c.block_size),
            len(codes),
        )
        model = fit_classifier(x[~is_test], y[~is_test], len(codes), c)
        predicted = np.argmax(probabilities(model, x[is_test]), axis=1)
        scores = _scores(y[is_test], predicted, codes, names)
        if c.refit_all:
            model = fit_classifier(x, y, len(codes), c)
        facts = {
            "codes": codes,
            "names": names,
            "bands": bands,
            "checkpoint": str(source.checkpoint or source.init_from),
            "series": shape,
        }
        classifier_path = save_classifier(
            root,
            model,
            {
                **facts,
                "colours": np.asarray(class_colours(len(codes)), np.uint8),
                "step": -1 if source.step is None else source.step,
            },
        )
        trees = "extremely randomised trees" if c.model == "extra_trees" else "random forest"
        results["protocol"] = (
            f"{trees} of {int(c.trees)} trees (scikit-learn) on the embeddings"
            + (" and the raw band series" if shape else "")
            if c.model in TREE_MODELS
            else "logistic regression on the embeddings (scikit-learn)"
        )
        results["metrics"] = {k: scores[k] for k in ("overall_accuracy", "macro_f1")}
        results["per_class"] = scores["per_class"]
        results["data"] = {
            "path": config.data.path,
            "patches": len(patches),
            "bands": len(bands),
            "train_pixels": int((~is_test).sum()),
            "test_pixels": int(is_test.sum()),
            "split": f"held-out blocks of {int(c.block_size)} px "
            f"(test_fraction {float(c.test_fraction)})",
            "map_classifier": "refitted on every labelled pixel"
            if c.refit_all
            else "fitted on the training blocks",
        }
    out_folder = root / MAPS_DIR
    out_folder.mkdir(parents=True, exist_ok=True)
    tags = {**first_facts["tags"], "classifier": str(classifier_path)}
    tags.pop("dtype", None)
    files, panels, seen, hits = [], [], [], []
    for patch, mask in progress_lib.progress(
        list(zip(patches, labelled, strict=True)), desc="Class maps", unit="patch"
    ):
        values, valid, _ = loaded[patch.patch_id]
        values = pixel_features(patch, values, bool(shape))
        probs = probabilities(model, values.reshape(-1, values.shape[-1]))
        probs = probs.reshape(*values.shape[:2], -1)
        written, ranks = write_class_maps(
            out_folder, patch, probs, valid, facts, {**tags, "patch": patch.patch_id}, config.maps
        )
        files.append(written)
        panels.append((patch.patch_id, ranks))
        if config.classifier_from and mask.any():
            known = np.isin(patch.labels[mask], facts["codes"])
            seen.append(np.searchsorted(facts["codes"], patch.labels[mask][known]))
            hits.append(ranks[mask][known])
    if config.classifier_from:
        results["data"] = {"path": config.data.path, "patches": len(patches)}
        if seen:
            scores = _scores(
                np.concatenate(seen), np.concatenate(hits), facts["codes"], facts["names"]
            )
            results["metrics"] = {
                f"{k}_all_labels": scores[k] for k in ("overall_accuracy", "macro_f1")
            }
            results["per_class"] = scores["per_class"]
        else:
            results["metrics"] = {}
    class_map_figure(root / FIGURE, panels, facts["names"])
    results.update(
        figures={"class map": FIGURE},
        classifier=str(classifier_path),
        maps=files,
        config=config.to_dict(),
    )
    write_results(root, results)
    summary = ", ".join(f"{k}={v:.4f}" for k, v in results["metrics"].items())
    logging.info(
        "Wrote %d class maps to %s (%s), the classifier %s and %s. Map another folder with: "
        "python launch.py --config=configs/classify_map.py --config.init_from=%s "
        "--config.classifier_from=%s --config.data.path=OTHER_DIR --workdir=OTHER_OUT",
        len(files),
        out_folder,
        summary or "no labels scored",
        classifier_path,
        root / "results.md",
        config.init_from,
        classifier_path,
    )
    return results


def _cap_per_class(ranks: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Indices keeping at most ``cap`` seeded pixels per class, in their original order."""
    rng = np.random.default_rng(seed)
    keep = []
    for rank in np.unique(ranks):
        rows = np.flatnonzero(ranks == rank)
        keep.append(rows if rows.size <= cap else rng.choice(rows, cap, replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
