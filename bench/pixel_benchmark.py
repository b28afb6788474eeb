"""Pixel classification on every real labelled pixel file: the library against the baselines.

    python bench/pixel_benchmark.py [DATA.npz ...] [--folds 5] [--seeds 3]
        [--rows rf,lgbm,tempcnn,pimc,pimc_paper] [--init_from CKPT_OR_WORKDIR]
        [--set KEY=VALUE ...] [--candidate NAME KEY=VALUE[,KEY=VALUE...] ...]
        [--json SCORES.json]
    python bench/pixel_benchmark.py --summary_of SCORES.json [MORE.json ...]
    python bench/pixel_benchmark.py [DATA.npz ...] --from_probabilities DIR [--json BLENDS.json]

With no file, every labelled ``.npz`` of ``../shared/data/real/`` (user pixel format,
:func:`pimc_jax.data.user.load_pixel_npz`). Per file: seeded stratified k-fold
(:func:`~pimc_jax.evaluation.pixels.seeded_split_rows`, ``--eval_seed``); classes with
fewer members than folds are dropped and listed. Every row sees the same folds; each
row runs ``--seeds`` times per fold (the forest's ``random_state``, the learned rows'
training seed).

Rows (baselines in ``bench/baselines.py``):

- ``rf``: RandomForest (300 trees) on the raw band values; ``lgbm``: LightGBM on the same;
  ``tempcnn``: TempCNN (Pelletier et al. 2019) on the standardised band series, its epoch
  chosen on the evaluator's validation rows. The trees fit on train + val.
- ``pimc``: the library's pixel classifier as ``configs/eval_pastis_classification.py``
  with ``data.name=npz`` and ``data.cv_folds=F data.cv_fold=i`` runs it (its defaults: the
  fine-tuned plot-tower ensemble averaged with tree models, ``finetune.trees``);
  from the same run, ``pimc[trees=none]`` (the tower alone), ``pimc[trees=forest]``, ...,
  each also with weights chosen out of fold (``,blend=oof``) and with the class-prior
  correction chosen out of fold (``,prior=auto``; the default ``pimc`` row has it);
  ``--save_probabilities DIR`` keeps every model's probabilities and
  ``--from_probabilities DIR`` scores all those blends again without training.
  ``pimc_paper``: the paper's representation and classifier (the ``:paper`` variant).
- ``--candidate NAME KEY=VALUE,...``: ``pimc`` with those overrides, a row named ``NAME``.
- with ``--init_from``: ``pimc_pretrained`` (fine-tuned from that checkpoint),
  ``pimc_pretrained_linear`` (frozen features, logistic probe) and ``pimc_linear`` (the
  same probe on a random-init encoder).

The summary gives, per file and on average over files, each row's mean accuracy and
macro-F1 (± the standard deviation over folds × seeds), then the gap of every ``pimc*``
row to the forest and to the best baseline, and, with candidates, leave-one-set-out: for
each file the ``pimc*`` row with the best mean over the *other* files, scored on that file.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import sys
import time
from pathlib import Path

import ml_collections
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import baselines  # noqa: E402

from pimc_jax import parallel  # noqa: E402
from pimc_jax.data.user import load_pixel_npz  # noqa: E402
from pimc_jax.evaluation.classification import (  # noqa: E402
    check_prior_correction,
    classify,
)
from pimc_jax.evaluation.encoders import load_encoder  # noqa: E402
from pimc_jax.evaluation.pixel_classification import PixelClassification  # noqa: E402
from pimc_jax.evaluation.pixels import (  # noqa: E402
    seeded_split_rows,
    series_features,
    series_inputs,
)
from pimc_jax.evaluation.priors import prior_corrected  # noqa: E402
from pimc_jax.evaluation.scores import classification_metrics, confusion_matrix  # noqa: E402
from pimc_jax.evaluation.towers import plot_tower  # noqa: E402
from pimc_jax.evaluation.trees import TREE_MODELS, blend_weights, parse_trees  # noqa: E402
from pimc_jax.launcher import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "eval_pastis_classification.py"
REAL = ROOT.parent / "shared" / "data" / "real"
BASELINES = ("rf", "lgbm", "tempcnn", "cnn_1d")


def labelled_files(directory: Path = REAL) -> list[str]:
    """Every ``.npz`` in ``directory`` holding a ``labels`` array, sorted by name."""
    found = []
    for path in sorted(directory.glob("*.npz")):
        with np.load(path, allow_pickle=False) as data:
            if "labels" in data.files and "bands" in data.files:
                found.append(str(path))
    return found


def _scores(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> tuple[float, float]:
    confusion = confusion_matrix(labels, predictions, num_classes)
    scores = classification_metrics(confusion)
    return scores["overall_accuracy"], scores["macro_f1"]


def _override(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` → ``(KEY, value)``; the value is a Python literal, else a string."""
    key, _, text = item.partition("=")
    try:
        return key, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return key, text


def _config(variant: str, data: str, args, fold: int, seed: int, extra=(), dropped=()):
    config = load_config(f"{CONFIG}:{variant}" if variant else CONFIG)
    config.data.name = "npz"
    config.data.path = data
    config.data.cv_folds = args.folds
    config.data.cv_fold = fold
    config.data.eval_seed = args.eval_seed
    config.protocol = "finetune"
    config.seed = seed
    config.exclude_classes = tuple(dropped)
    config.finetune.log_every_steps = 0
    config.update_from_flattened_dict(dict(_override(item) for item in [*args.set, *extra]))
    return config


def _pimc_row(
    config, init_from: str | None, scores_out: dict[str, list], save_to: str = ""
) -> tuple[float, float]:
    """The library's classifier on one fold: its (accuracy, macro-F1).

    For the fine-tuned rows with ``finetune.trees``, every tree model is fitted and the
    same run's tower alone and the tower with each subset of the tree models are scored
    too, into ``scores_out`` under ``[trees=...]`` names (the tower is trained once; the
    blends are exact re-blends), each subset both as the plain mean and with the weights
    chosen on out-of-fold predictions (``[trees=...,blend=oof]``); the row's own score is
    the subset and blend its settings pick. ``save_to``: an ``.npz`` of every model's test
    and out-of-fold probabilities, for blends tried later without training again.
    """
    chosen = config.finetune.get("trees", "none")
    blend = config.finetune.get("blend", "mean")
    if config.protocol == "finetune" and parse_trees(chosen):
        config = ml_collections.ConfigDict(config.to_dict())
        config.finetune.trees = "+".join(TREE_MODELS)
        if config.finetune.get("ensemble_members", 1) > 1:  # out-of-fold trees for the blends
            config.finetune.blend = "oof"
    evaluator = PixelClassification(config)
    if init_from:
        params, _ = load_encoder(init_from, evaluator.random_params)
    else:
        params = evaluator.random_params()
    s = evaluator.splits
    tower = plot_tower(params.spec)
    outputs = classify(
        config,
        params,
        tower,
        (s.train, s.val, s.test),
        s.num_classes,
        features_fn=lambda split: series_features(params, split, s.band_names, tower),
        inputs_fn=series_inputs,
        band_names=s.band_names,
    )
    labels = s.test["labels"]
    if "tree_test_probabilities" not in outputs:
        return _scores(labels, outputs["test_predictions"], s.num_classes)
    saved = {"test_labels": labels, "tower_test": outputs["tower_test_probabilities"]}
    saved.update({f"{name}_test": p for name, p in outputs["tree_test_probabilities"].items()})
    if "tree_oof_probabilities" in outputs:
        saved.update(oof_labels=outputs["oof_labels"], tower_oof=outputs["oof_probabilities"])
        saved.update({f"{n}_oof": p for n, p in outputs["tree_oof_probabilities"].items()})
    if save_to:
        np.savez_compressed(save_to, **saved)
    own = (chosen, blend, config.finetune.get("prior_correction", "none"))
    return blend_scores(saved, own, s.num_classes, scores_out)


def blend_scores(
    saved: dict[str, np.ndarray],
    own: tuple[str, str, object],
    num_classes: int,
    scores_out: dict[str, list],
) -> tuple[float, float]:
    """Scores every blend of one fine-tuned run from its models' probabilities.

    ``saved`` holds what ``--save_probabilities`` writes: ``test_labels``, ``tower_test``,
    ``{model}_test`` per tree model and, from a cross-fitted ensemble, ``oof_labels``,
    ``tower_oof`` and ``{model}_oof``. Every subset of the tree models is scored with the
    plain mean and, with out-of-fold probabilities, the weights :func:`blend_weights`
    chooses on them (``,blend=oof``), each also with the class-prior correction chosen on
    the blend's out-of-fold probabilities (``,prior=auto``;
    :mod:`pimc_jax.evaluation.priors`), into ``scores_out``. ``own`` is the row's
    ``(finetune.trees, finetune.blend, finetune.prior_correction)``; returns its score,
    computed exactly as :func:`~pimc_jax.evaluation.classification.classify` blends.
    """
    labels = saved["test_labels"]
    has_oof = "oof_labels" in saved
    names = tuple(name for name in TREE_MODELS if f"{name}_test" in saved)
    pool = saved["oof_labels"].size if has_oof else None
    own_trees = parse_trees(own[0], pool)
    own_prior = check_prior_correction(own[2])
    if not has_oof and own_prior != "none":  # "auto" is then the identity, as in classify
        if own_prior != "auto":
            raise ValueError(
                "a fixed finetune.prior_correction is re-blended from the cross-fitted "
                "ensemble's labels: set finetune.ensemble_members >= 2"
            )
        own_prior = "none"
    corrections = ["none"] + (["auto"] if has_oof else []) + [own_prior]
    fit_labels = saved.get("oof_labels")  # the training pixels: their prior
    subsets = [c for n in range(len(names) + 1) for c in itertools.combinations(names, n)]
    for subset in subsets:
        members = np.stack([saved["tower_test"]] + [saved[f"{n}_test"] for n in subset])
        blends = {"mean": np.full(len(members), 1 / len(members))}
        if has_oof:
            oof = np.stack([saved["tower_oof"]] + [saved[f"{n}_oof"] for n in subset])
            if subset:
                blends["oof"] = blend_weights(list(oof), saved["oof_labels"])
        for name, weights in blends.items():
            test = np.tensordot(weights, members, 1)
            blended = np.tensordot(weights, oof, 1) if has_oof else None
            for correction in dict.fromkeys(corrections):
                p, _ = prior_corrected(test, fit_labels, num_classes, correction, blended)
                score = _scores(labels, p.argmax(-1), num_classes)
                key = f"[trees={'+'.join(subset) or 'none'}{',blend=oof' * (name == 'oof')}"
                key += f",prior={correction}]" if correction != "none" else "]"
                scores_out.setdefault(key, []).append(score)
                own_blend = own[1] if subset else "mean"
                if subset == own_trees and name == own_blend and correction == own_prior:
                    row_score = score
    return row_score


def from_probabilities(path: str, folder: str, args) -> dict[str, list]:
    """``--from_probabilities``: every blend of the ``pimc*`` runs saved for ``path``
    (``{stem}_{row}_fold{i}_seed{s}.npz``), scored with :func:`blend_scores` and the
    defaults of ``configs/eval_pastis_classification.py`` (plus ``--set``), no training."""
    pixels = load_pixel_npz(path)
    num_classes = int(pixels.labels.max()) + 1
    tune = _config("", path, args, 0, 0).finetune
    own = (tune.trees, tune.blend, tune.get("prior_correction", "none"))
    results: dict[str, list] = {}
    stem = Path(path).stem
    for saved_path in sorted(Path(folder).glob(f"{stem}_pimc*_fold*_seed*.npz")):
        row = saved_path.stem[len(stem) + 1 :].rsplit("_fold", 1)[0]
        with np.load(saved_path) as saved:
            variants: dict[str, list] = {}
            results.setdefault(row, []).append(
                blend_scores(dict(saved), own, num_classes, variants)
            )
        for key, value in variants.items():
            results.setdefault(f"{row}{key}", []).extend(value)
    if not results:
        raise SystemExit(f"no saved probabilities of {stem} in {folder}")
    runs = len(results[next(iter(results))])
    print(f"{Path(path).name}: {runs} saved runs")
    return results


def run_file(path: str, args, candidates: dict[str, list[str]], on_fold=None) -> dict[str, list]:
    """Every row on every fold and seed of one file: ``{row: [(accuracy, macro-F1), ...]}``."""
    pixels = load_pixel_npz(path)
    labels = pixels.labels.astype(np.int64)
    counts = np.bincount(labels)
    dropped = [int(k) for k in np.flatnonzero((counts > 0) & (counts < args.folds))]
    names = pixels.class_names or tuple(str(k) for k in range(counts.size))
    kept = np.flatnonzero(~np.isin(labels, dropped))
    num_classes = counts.size
    print(
        f"\n{Path(path).name}: {labels.size} pixels, {pixels.bands.shape[1]} dates, bands "
        f"{list(pixels.band_names)}; {args.folds} folds (seed {args.eval_seed})"
    )
    if dropped:
        print(
            "dropped (fewer pixels than folds): "
            + ", ".join(f"{names[k]} ({counts[k]})" for k in dropped)
        )
    print(f"kept {kept.size} pixels in {np.count_nonzero(counts >= args.folds)} classes")

    rows = [r for r in args.rows.split(",") if r] + list(candidates)
    if args.init_from:
        rows += ["pimc_linear", "pimc_pretrained", "pimc_pretrained_linear"]
    results: dict[str, list] = {row: [] for row in rows}
    seconds = dict.fromkeys(rows, 0.0)
    for fold in range(args.folds):
        base = _config("", path, args, fold, 0, dropped=dropped)
        split = seeded_split_rows(labels[kept], base.data, with_test=True)
        train_rows, val_rows, test_rows = (kept[r] for r in split)
        fit_rows = np.union1d(train_rows, val_rows)
        test_labels = labels[test_rows]
        for row in list(rows):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                start = time.perf_counter()
                if row in ("rf", "lgbm"):
                    fn = baselines.forest if row == "rf" else baselines.boosted_trees
                    proba = fn(pixels.bands, labels, fit_rows, test_rows, num_classes, seed)
                    score = _scores(test_labels, proba.argmax(-1), num_classes)
                elif row == "tempcnn":
                    proba = baselines.tempcnn(
                        pixels.bands, labels, train_rows, val_rows, test_rows, num_classes, seed
                    )
                    score = _scores(test_labels, proba.argmax(-1), num_classes)
                else:
                    variant = "paper" if row == "pimc_paper" else ""
                    config = _config(
                        variant, path, args, fold, seed, candidates.get(row, ()), dropped
                    )
                    if row.endswith("_linear"):
                        config.protocol = "linear"
                    init = args.init_from if row.startswith("pimc_pretrained") else None
                    variants: dict[str, list] = {}
                    save_to = ""
                    if args.save_probabilities:
                        folder = Path(args.save_probabilities)
                        folder.mkdir(parents=True, exist_ok=True)
                        save_to = str(folder / f"{Path(path).stem}_{row}_fold{fold}_seed{seed}.npz")
                    try:
                        score = _pimc_row(config, init, variants, save_to)
                    except ValueError as error:  # e.g. the paper's SAVI from NDVI/EVI only
                        if results[row]:  # it ran on an earlier fold: a real failure
                            raise
                        print(f"{row} cannot run on {Path(path).name}, left out: {error}")
                        rows.remove(row)
                        del results[row], seconds[row]
                        break
                    for key, value in variants.items():
                        results.setdefault(f"{row}{key}", []).extend(value)
                seconds[row] += time.perf_counter() - start
                results[row].append(score)
        done = ", ".join(f"{r} {np.mean([a for a, _ in results[r]]):.3f}" for r in rows)
        print(f"fold {fold + 1}/{args.folds}: mean accuracy so far {done}", flush=True)
        if on_fold is not None:  # e.g. save what is done so far
            on_fold(results)
    print("| model | accuracy | macro-F1 | seconds |")
    print("|---|---|---|---|")
    for row in results:
        accuracy, macro_f1 = np.asarray(results[row]).T
        print(
            f"| {row} | {accuracy.mean():.3f} ± {accuracy.std():.3f} | "
            f"{macro_f1.mean():.3f} ± {macro_f1.std():.3f} | {seconds.get(row, 0.0):.0f} |"
        )
    return results


def summary(results: dict[str, dict[str, list]]) -> str:
    """Markdown: means per file and overall, gaps to the forest and the best baseline, and
    leave-one-set-out over the ``pimc*`` rows."""
    files = list(results)
    rows = list(dict.fromkeys(r for f in files for r in results[f]))
    rows = [r for r in rows if all(r in results[f] for f in files)]  # rows of every file
    mean = {f: {r: np.mean(results[f][r], axis=0) for r in rows} for f in files}
    lines = ["| row | " + " | ".join(Path(f).stem for f in files) + " | mean over files |"]
    lines.append("|---" * (len(files) + 2) + "|")
    for r in rows:
        cells = [f"{mean[f][r][0]:.3f} / {mean[f][r][1]:.3f}" for f in files]
        overall = np.mean([mean[f][r] for f in files], axis=0)
        lines.append(f"| {r} | " + " | ".join(cells) + f" | {overall[0]:.3f} / {overall[1]:.3f} |")
    base = [r for r in rows if r in BASELINES]
    ours = [r for r in rows if r not in BASELINES]
    if base and ours:
        lines += [
            "",
            "Gap (accuracy / macro-F1 points) to the forest and to the best baseline "
            "on each metric:",
            "",
        ]
        lines.append("| row | " + " | ".join(Path(f).stem for f in files) + " | mean |")
        lines.append("|---" * (len(files) + 2) + "|")
        for r in ours:
            cells, gaps = [], []
            for f in files:
                best = np.max([mean[f][b] for b in base], axis=0)
                gap_rf = 100 * (mean[f][r] - mean[f].get("rf", best))
                gap_best = 100 * (mean[f][r] - best)
                gaps.append(np.concatenate([gap_rf, gap_best]))
                cells.append(
                    f"rf {gap_rf[0]:+.1f} / {gap_rf[1]:+.1f}; best {gap_best[0]:+.1f} / "
                    f"{gap_best[1]:+.1f}"
                )
            g = np.mean(gaps, axis=0)
            lines.append(
                f"| {r} | "
                + " | ".join(cells)
                + f" | rf {g[0]:+.1f} / {g[1]:+.1f}; best {g[2]:+.1f} / {g[3]:+.1f} |"
            )
    if len(ours) > 1 and len(files) > 1:
        lines += [
            "",
            "Leave-one-set-out (row chosen on the mean accuracy + macro-F1 of the "
            "other files, scored on the left-out one):",
            "",
        ]
        lines += ["| left out | chosen | accuracy / macro-F1 | best on it |", "|---|---|---|---|"]
        for f in files:
            others = [g for g in files if g != f]
            chosen = max(ours, key=lambda r: np.mean([mean[g][r].sum() for g in others]))
            top = max(ours, key=lambda r: mean[f][r].sum())
            lines.append(
                f"| {Path(f).stem} | {chosen} | {mean[f][chosen][0]:.3f} / "
                f"{mean[f][chosen][1]:.3f} | {top} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="*", help="pixel .npz files (default: the real sets)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per row and fold")
    parser.add_argument("--first_seed", type=int, default=0, help="seeds first_seed, ...")
    parser.add_argument("--eval_seed", type=int, default=0, help="seed of the folds")
    parser.add_argument("--rows", default="rf,lgbm,tempcnn,pimc,pimc_paper")
    parser.add_argument("--init_from", default="", help="pre-training workdir or checkpoint")
    parser.add_argument("--set", action="append", default=[], help="override KEY=VALUE (all)")
    parser.add_argument(
        "--candidate",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "OVERRIDES"),
        help="a pimc row NAME with comma-separated KEY=VALUE overrides",
    )
    parser.add_argument("--json", default="", help="write every (accuracy, macro-F1) here")
    parser.add_argument(
        "--save_probabilities",
        default="",
        metavar="DIR",
        help="pimc rows: every model's test and out-of-fold class probabilities, one .npz "
        "per file, row, fold and seed",
    )
    parser.add_argument(
        "--from_probabilities",
        default="",
        metavar="DIR",
        help="train nothing: score every blend of the runs saved by --save_probabilities",
    )
    parser.add_argument(
        "--summary_of",
        nargs="+",
        default=[],
        metavar="JSON",
        help="run nothing: the summary of earlier --json files (a row's scores in several "
        "files, e.g. other seeds, are pooled)",
    )
    args = parser.parse_args()
    if args.summary_of:
        merged: dict[str, dict[str, list]] = {}
        for path in args.summary_of:
            for data, rows in json.loads(Path(path).read_text()).items():
                for row, scores in rows.items():  # e.g. more seeds of a row: appended
                    merged.setdefault(Path(data).name, {}).setdefault(row, []).extend(scores)
        print(summary(merged))
        return
    files = args.data or labelled_files()
    if not files:
        raise SystemExit(f"no labelled .npz file given or found in {REAL}")
    if args.from_probabilities:
        results = {path: from_probabilities(path, args.from_probabilities, args) for path in files}
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        print("\n" + summary(results))
        return
    candidates = {name: [o for o in text.split(",") if o] for name, text in args.candidate}
    results = {}
    for path in files:

        def save(done: dict[str, list], path: str = path) -> None:
            if args.json:  # per file and row: [accuracy, macro-F1] of each fold and seed
                Path(args.json).write_text(json.dumps({**results, path: done}, indent=1))

        results[path] = run_file(path, args, candidates, on_fold=save)
    print("\n" + summary(results))


if __name__ == "__main__":
    parallel.set_xla_cpu_flags()  # before JAX starts its backends
    main()
