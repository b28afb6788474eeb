"""Pixel classification on a real labelled pixel file: the library against scikit-learn.

    python bench/pixel_benchmark.py DATA.npz [--folds 5] [--init_from CKPT_OR_WORKDIR]
        [--rows rf,cnn_1d,pimc,pimc_paper] [--seeds 1] [--set finetune.steps=300 ...]
        [--json SCORES.json]

``DATA.npz`` is a user pixel file (:func:`pimc_jax.data.user.load_pixel_npz`). Seeded
stratified k-fold (:func:`pimc_jax.data.splits.stratified_folds` through the evaluator's
:func:`~pimc_jax.evaluation.pixels.seeded_split_rows`, ``--eval_seed``); classes
with fewer members than folds are dropped and listed. Every row sees the same folds:

- ``rf``: scikit-learn RandomForest, 300 trees, on the raw band values (T × C features),
  gaps filled with the training folds' mean of that feature.
- ``cnn_1d``: a 1-D temporal CNN (:class:`pimc_jax.evaluation.forecasting.SeriesCNN`) on
  the band series standardised with the training folds' statistics, gaps filled with 0.
- ``pimc``: the library's pixel classifier, fine-tuned from random init exactly as
  ``configs/eval_pastis_classification.py`` with ``data.name=npz``, ``protocol=finetune``,
  ``data.cv_folds=F`` and ``data.cv_fold=i`` does it (the defaults of that config).
- ``pimc_paper``: the same with the paper's representation (the ``:paper`` variant).
- with ``--init_from``: ``pimc_pretrained`` (fine-tuned from that checkpoint),
  ``pimc_pretrained_linear`` (its frozen features, logistic-regression probe) and
  ``pimc_linear`` (the same probe on a random-init encoder, the baseline of the last).

The learned rows choose on pixels of the training folds only: the fine-tuned ones are
cross-fitted ensembles (``finetune.ensemble_members``: each member trains on all but one
part of the training folds and keeps its best step on that part, so together they fit
on all of them, as the RandomForest does); the linear probes hold out
``data.val_fraction`` for their L2. The table gives accuracy and macro-F1 as mean ± std
over folds and over ``--seeds`` seeds (the forest's ``random_state`` and the learned
rows' training seed).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pimc_jax.data.user import load_pixel_npz  # noqa: E402
from pimc_jax.evaluation.classification import selection_score  # noqa: E402
from pimc_jax.evaluation.encoders import load_encoder  # noqa: E402
from pimc_jax.evaluation.finetune import (  # noqa: E402
    class_weights,
    finetune_settings,
    train_supervised,
)
from pimc_jax.evaluation.forecasting import SeriesCNN  # noqa: E402
from pimc_jax.evaluation.pixel_classification import PixelClassification  # noqa: E402
from pimc_jax.evaluation.pixels import seeded_split_rows  # noqa: E402
from pimc_jax.evaluation.scores import classification_metrics, confusion_matrix  # noqa: E402
from pimc_jax.evaluation.towers import predict  # noqa: E402
from pimc_jax.launcher import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "eval_pastis_classification.py"


def _scores(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> tuple[float, float]:
    confusion = confusion_matrix(labels, predictions, num_classes)
    scores = classification_metrics(confusion)
    return scores["overall_accuracy"], scores["macro_f1"]


def _config(variant: str, args: argparse.Namespace, fold: int, seed: int):
    config = load_config(f"{CONFIG}:{variant}" if variant else CONFIG)
    config.data.name = "npz"
    config.data.path = args.data
    config.data.cv_folds = args.folds
    config.data.cv_fold = fold
    config.data.eval_seed = args.eval_seed
    config.protocol = "finetune"
    config.seed = seed
    config.exclude_classes = tuple(args.dropped)
    config.finetune.log_every_steps = 0
    config.update_from_flattened_dict(dict(_override(item) for item in args.set))
    return config


def _override(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` → ``(KEY, value)``; the value is a Python literal, else a string."""
    key, _, text = item.partition("=")
    try:
        return key, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return key, text


def _pimc_row(config: ml_collections.ConfigDict, init_from: str | None) -> tuple[float, float]:
    evaluator = PixelClassification(config)
    if init_from:
        params, _ = load_encoder(init_from, evaluator.random_params)
    else:
        params = evaluator.random_params()
    metrics = evaluator.run(params)["metrics"]
    return metrics["overall_accuracy"], metrics["macro_f1"]


def _filled(bands: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    """``(N, T·C)`` features with NaNs replaced by the training rows' feature mean."""
    flat = bands.reshape(bands.shape[0], -1).astype(np.float64)
    mean = np.nanmean(flat[train_rows], axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    return np.where(np.isfinite(flat), flat, mean)


def _rf_row(bands, labels, train_rows, test_rows, num_classes, seed) -> tuple[float, float]:
    from sklearn.ensemble import RandomForestClassifier

    features = _filled(bands, train_rows)
    forest = RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=-1)
    forest.fit(features[train_rows], labels[train_rows])
    return _scores(labels[test_rows], forest.predict(features[test_rows]), num_classes)


def _cnn_row(config, bands, labels, splits, num_classes) -> tuple[float, float]:
    train_rows, val_rows, test_rows = splits
    mean = np.nanmean(bands[train_rows], axis=(0, 1))
    std = np.nanstd(bands[train_rows], axis=(0, 1)) + 1e-6
    series = np.nan_to_num((bands - mean) / std).astype(np.float32)
    model = SeriesCNN(num_outputs=num_classes)
    params = model.init(jax.random.key(config.seed), jnp.asarray(series[:1]))
    forward = lambda p, batch: model.apply(p, batch["series"])
    trained = train_supervised(
        forward,
        params,
        {"series": series[train_rows]},
        labels[train_rows],
        loss="cross_entropy",
        class_weights=class_weights(
            labels[train_rows], num_classes, config.finetune.class_weighting
        ),
        validation=({"series": series[val_rows]}, labels[val_rows]),
        score_fn=lambda logits, y: selection_score(y, np.argmax(logits, -1), num_classes),
        **finetune_settings(config),
        name="cnn_1d",
    )
    logits = predict(forward, trained, {"series": series[test_rows]})
    return _scores(labels[test_rows], np.argmax(logits, -1), num_classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="pixel .npz file (user format)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per learned row")
    parser.add_argument("--eval_seed", type=int, default=0, help="seed of the folds")
    parser.add_argument("--rows", default="rf,cnn_1d,pimc,pimc_paper")
    parser.add_argument("--init_from", default="", help="pre-training workdir or checkpoint")
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--json", default="", help="also write every (accuracy, macro-F1) here")
    args = parser.parse_args()

    pixels = load_pixel_npz(args.data)
    if pixels.labels is None:
        raise SystemExit(f"{args.data}: no 'labels' array; the benchmark needs labelled pixels")
    labels = pixels.labels.astype(np.int64)
    counts = np.bincount(labels)
    args.dropped = [int(k) for k in np.flatnonzero((counts > 0) & (counts < args.folds))]
    names = pixels.class_names or tuple(str(k) for k in range(counts.size))
    kept = np.flatnonzero(~np.isin(labels, args.dropped))
    num_classes = counts.size
    print(
        f"{args.data}: {labels.size} pixels, {pixels.bands.shape[1]} dates, bands "
        f"{list(pixels.band_names)}; {args.folds} folds (seed {args.eval_seed})"
    )
    if args.dropped:
        dropped = ", ".join(f"{names[k]} ({counts[k]})" for k in args.dropped)
        print(f"dropped classes with fewer than {args.folds} pixels: {dropped}")
    print(f"kept {kept.size} pixels in {np.count_nonzero(counts >= args.folds)} classes")

    rows = [r for r in args.rows.split(",") if r]
    if args.init_from:
        rows += ["pimc_linear", "pimc_pretrained", "pimc_pretrained_linear"]
    results: dict[str, list[tuple[float, float]]] = {row: [] for row in rows}
    seconds: dict[str, float] = dict.fromkeys(rows, 0.0)
    for fold in range(args.folds):
        # The evaluator's own split of the kept pixels (train, val, test rows of the file),
        # so every row sees the same test fold and the learned rows the same val rows.
        split = seeded_split_rows(labels[kept], _config("", args, fold, 0).data, with_test=True)
        train_rows, val_rows, test_rows = (kept[r] for r in split)
        for row in rows:
            for seed in range(args.seeds):
                start = time.perf_counter()
                variant = "paper" if row == "pimc_paper" else ""
                config = _config(variant, args, fold, seed)
                if row.endswith("_linear"):
                    config.protocol = "linear"
                if row == "rf":  # needs no validation rows: it trains on them too
                    fit_rows = np.union1d(train_rows, val_rows)
                    score = _rf_row(pixels.bands, labels, fit_rows, test_rows, num_classes, seed)
                elif row == "cnn_1d":
                    splits = (train_rows, val_rows, test_rows)
                    score = _cnn_row(config, pixels.bands, labels, splits, num_classes)
                else:
                    init = args.init_from if row.startswith("pimc_pretrained") else None
                    score = _pimc_row(config, init)
                seconds[row] += time.perf_counter() - start
                results[row].append(score)
        done = ", ".join(f"{r} {np.mean([a for a, _ in results[r]]):.3f}" for r in rows)
        print(f"fold {fold + 1}/{args.folds}: mean accuracy so far {done}", flush=True)

    if args.json:  # per row: [accuracy, macro-F1] of each fold (and seed), in run order
        Path(args.json).write_text(json.dumps({row: results[row] for row in rows}, indent=1))
    print()
    print("| model | accuracy | macro-F1 | seconds |")
    print("|---|---|---|---|")
    for row in rows:
        accuracy, macro_f1 = np.asarray(results[row]).T
        print(
            f"| {row} | {accuracy.mean():.3f} ± {accuracy.std():.3f} | "
            f"{macro_f1.mean():.3f} ± {macro_f1.std():.3f} | {seconds[row]:.0f} |"
        )


if __name__ == "__main__":
    main()
