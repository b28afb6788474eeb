"""Label efficiency on a labelled real patch: pre-trained embeddings, random init, a forest.

    python bench/label_efficiency.py --write_patch_folder /tmp/slovenia
    python launch.py --config=configs/pretrain.py --config.data.name=patches \\
        --config.data.path=/tmp/slovenia --workdir=/tmp/pretrain_slovenia
    python bench/label_efficiency.py --init_from /tmp/pretrain_slovenia
        [--patch ../shared/data/real/eolearn_slovenia_ndvi_patch.npz | --patch PATCH_FOLDER]
        [--k 5,10,20,50] [--draws 10] [--block 8] [--buffer 8]
        [--forest_features rp,image] [--linear_features rp_features,image_features]
        [--trees extra_trees|forest] [--rows ROW,ROW] [--selftrain 0]
        [--exclude 0] [--finetune_draws 3] [--json OUT.json]
        [--figure OUT.png]
    python bench/label_efficiency.py --summary_of RUN.json[+SAME_DRAWS.json] [MORE.json ...]
        [--figure OUT.png]

The patch is either a patch folder (:func:`pimc_jax.data.user.load_patch_folder`, its first
patch with ``labels``) or the eo-learn Slovenia file of ``../shared/data/real/`` (NDVI,
cloud mask, land-cover raster; read by :func:`slovenia_patch`). Every pixel is embedded
once with :func:`pimc_jax.encode_patch`, with the pre-trained parameters and with fresh
parameters of the same spec (random init, ``--seed``).

Spatially blocked draws: the patch is cut into ``block × block`` tiles, half of them
(chosen at random per draw) may give training pixels, the others test pixels. From the
training tiles ``k`` labelled pixels per class are drawn (all of a class when it has
fewer); the test pixels are every labelled pixel of the test tiles farther than
``buffer`` pixels (Chebyshev) from every drawn training pixel, so no test pixel shares
an image crop's centre neighbourhood with a labelled one. Classes ``--exclude`` (0, the
Slovenia raster's no-data) are left out.

Rows, each fitted on the same drawn pixels and scored on the same test pixels (the
"forest" rows are 300 extremely randomised trees, scikit-learn's ``ExtraTreesClassifier``,
or with ``--trees forest`` a RandomForest):

- ``pretrained_forest``: the trees on the pixel's raw band series and its
  pre-trained embeddings side by side (``--forest_features``, outputs of
  :func:`~pimc_jax.encode_patch`: by default ``rp`` and ``image``, both towers' unit
  embeddings, the space the contrastive loss shapes; ``rp_features,image_features``
  gives the backbone features instead), the few-label recipe (trees on the series, as
  the pixel classifier's ``finetune.trees``, plus what the encoder learned about the
  series and its neighbourhood);
- ``random_forest``: the same with the random-init encoder's features;
- ``pretrained_embedding_forest`` / ``random_embedding_forest``: the forest on the
  embeddings alone, without the raw series (what ``classify_map`` fits with
  ``classifier.series=false``: the embedding rasters are all it reads);
- ``forest``: the trees on the raw band series alone (gaps filled with the training
  pixels' mean), the raw-band baseline; ``rf``: a RandomForest (300 trees) on the same,
  whatever ``--trees``, the usual baseline;
- ``pretrained_linear`` / ``random_linear``: logistic regression (scikit-learn, L2, C = 1)
  on the standardised backbone features alone (``--linear_features``), the classic
  linear probe;
- ``pretrained_finetune`` / ``random_finetune`` (on the first ``--finetune_draws`` draws of
  each ``k``; 0 leaves them out): the plot tower and a linear head fine-tuned on the drawn
  pixels' series with the pixel classifier's ``finetune`` settings
  (``configs/eval_pastis_classification.py``), one model (no ensemble, no validation
  pixels to select a step on, so the last step's moving average) and no tree models: what
  the tower itself learns from ``k`` labels, from the pre-trained and from random weights;
- ``pretrained_selftrain`` / ``random_selftrain`` / ``selftrain`` (``--selftrain N``): the
  trees of the three forest rows self-trained (scikit-learn's ``SelfTrainingClassifier``)
  with ``N`` unlabelled pixels drawn away from the test pixels.

``--summary_of`` pools runs; ``A.json+B.json`` joins two runs over the same draws (same
``--seed``, other rows) into one before pairing.

Prints mean ± std over draws of accuracy and macro-F1 per ``k`` and row.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import filled_features  # noqa: E402

from pimc_jax import parallel  # noqa: E402
from pimc_jax.checkpoint import load_params  # noqa: E402
from pimc_jax.data.patches import Patch  # noqa: E402
from pimc_jax.data.user import dates_to_days, load_patch_folder  # noqa: E402
from pimc_jax.encode import encode_patch  # noqa: E402
from pimc_jax.evaluation.scores import classification_metrics, confusion_matrix  # noqa: E402
from pimc_jax.evaluation.trees import fit_forest  # noqa: E402
from pimc_jax.models import init_params  # noqa: E402
from pimc_jax.pca import principal_components  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SLOVENIA = ROOT.parent / "shared" / "data" / "real" / "eolearn_slovenia_ndvi_patch.npz"
ROWS = (
    "pretrained_forest",
    "random_forest",
    "forest",
    "rf",
    "pretrained_embedding_forest",
    "random_embedding_forest",
    "pretrained_linear",
    "random_linear",
    "pretrained_finetune",
    "random_finetune",
    "pretrained_selftrain",
    "random_selftrain",
    "selftrain",
)


def slovenia_patch(path: str | Path = SLOVENIA) -> Patch:
    """The eo-learn Slovenia NDVI patch as a :class:`Patch`: cloudy observations become gaps
    and observations sharing a date are averaged (the file holds one date twice)."""
    with np.load(path, allow_pickle=False) as data:
        ndvi = np.where(data["cloud_mask"], np.nan, data["ndvi"]).astype(np.float32)
        dates, labels = data["dates"], data["lulc"].astype(np.int32)
    unique, inverse = np.unique(dates, return_inverse=True)
    merged = np.empty((unique.size, *ndvi.shape[1:]), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-cloud pixels stay NaN
        for t in range(unique.size):
            merged[t] = np.nanmean(ndvi[inverse == t], axis=0)
    return Patch(
        bands=merged[..., None],
        dates=dates_to_days(unique).astype(np.int32),
        band_names=("NDVI",),
        labels=labels,
        patch_id="slovenia",
    )


def load_patch(path: str) -> Patch:
    """A labelled patch from a patch folder, or the Slovenia file (module docstring)."""
    if Path(path).is_dir():
        patches = [p for p in load_patch_folder(path) if p.labels is not None]
        if not patches:
            raise SystemExit(f"{path}: no patch with labels")
        return patches[0]
    return slovenia_patch(path)


def write_patch_folder(patch: Patch, folder: str | Path) -> Path:
    """``patch`` as a one-file patch folder (:func:`pimc_jax.data.user.load_patch_folder`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{patch.patch_id}.npz"
    np.savez(
        path,
        bands=patch.reflectance(),
        dates=patch.dates,
        band_names=np.asarray(patch.band_names),
        labels=patch.labels,
    )
    return path


def embed(params, patch: Patch, features: list[list[str]], components: int = 0) -> list[np.ndarray]:
    """Per list of :func:`~pimc_jax.encode_patch` output names (``rp``, ``image``,
    ``rp_features``, ``image_features``), ``(H·W, F)`` of every pixel, side by side;
    ``components > 0``: each output of the first list (the forest's) reduced to its first
    ``components`` principal components over the patch's pixels (no labels used)."""
    out = encode_patch(params, patch, progress=False)
    chosen = []
    for index, names in enumerate(features):
        blocks = [out[name] for name in names]
        if components and index == 0:
            blocks = [principal_components(b, components) for b in blocks]
        chosen.append(np.concatenate(blocks, -1).reshape(-1, sum(b.shape[-1] for b in blocks)))
    return chosen


def draw(
    labels: np.ndarray, k: int | None, block: int, buffer: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One spatially blocked draw: flat indices of the training and the test pixels.

    ``labels`` is ``(H, W)`` with -1 for pixels left out; ``k=None`` takes every labelled
    pixel of the training tiles.
    """
    height, width = labels.shape
    tile_rows, tile_cols = np.ceil(height / block).astype(int), np.ceil(width / block).astype(int)
    tiles = rng.permutation(tile_rows * tile_cols)
    train_tiles = np.zeros(tile_rows * tile_cols, bool)
    train_tiles[tiles[: tiles.size // 2]] = True
    rows, cols = np.indices(labels.shape)
    in_train = train_tiles[(rows // block) * tile_cols + cols // block]
    flat = labels.reshape(-1)
    chosen = []
    for cls in np.unique(flat[flat >= 0]):
        pool = np.flatnonzero((flat == cls) & in_train.reshape(-1))
        take = pool.size if k is None else min(k, pool.size)
        chosen.append(rng.choice(pool, take, replace=False))
    train = np.concatenate(chosen)
    near = np.zeros(labels.shape, bool)
    for index in train:
        r, c = divmod(int(index), width)
        near[max(r - buffer, 0) : r + buffer + 1, max(c - buffer, 0) : c + buffer + 1] = True
    test = np.flatnonzero((flat >= 0) & ~in_train.reshape(-1) & ~near.reshape(-1))
    return train, test


def _linear(features: np.ndarray, labels: np.ndarray, train, test) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    model.fit(features[train], labels[train])
    return model.predict(features[test])


def _forest(
    features: np.ndarray, labels: np.ndarray, train, test, seed: int, extra: bool
) -> np.ndarray:
    """300 trees (:func:`~pimc_jax.evaluation.trees.fit_forest`: a RandomForest, or
    extremely randomised trees with ``extra``) fitted on ``train``; test predictions."""
    model, fill = fit_forest(features[train], labels[train], seed, extra=extra)
    return model.predict(np.where(np.isnan(features[test]), fill, features[test]))


def unlabelled_pool(
    shape: tuple[int, int], train: np.ndarray, test: np.ndarray, buffer: int, size: int, rng
) -> np.ndarray:
    """Flat indices of up to ``size`` pixels for self-training, drawn at random among those
    farther than ``buffer`` px (Chebyshev) from every test pixel and not drawn for training:
    no test pixel, nor its image crop's centre neighbourhood, is seen, labelled or not."""
    from scipy.ndimage import maximum_filter

    near_test = np.zeros(shape, bool).reshape(-1)
    near_test[test] = True
    near_test = maximum_filter(near_test.reshape(shape), size=2 * buffer + 1).reshape(-1)
    candidates = np.flatnonzero(~near_test)
    candidates = np.setdiff1d(candidates, train)
    return rng.choice(candidates, min(size, candidates.size), replace=False)


def _selftrain(
    features: np.ndarray,
    labels: np.ndarray,
    train,
    pool,
    test,
    seed: int,
    threshold: float,
    extra: bool,
) -> np.ndarray:
    """The trees of :func:`_forest` self-trained (scikit-learn's ``SelfTrainingClassifier``)
    on the drawn pixels and the unlabelled ``pool``: each round adds the pool pixels whose
    predicted class probability is at least ``threshold`` as pseudo-labels."""
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.semi_supervised import SelfTrainingClassifier

    kind = ExtraTreesClassifier if extra else RandomForestClassifier
    model = SelfTrainingClassifier(
        kind(n_estimators=300, random_state=seed, n_jobs=-1), threshold=threshold, max_iter=10
    )
    rows = np.concatenate([train, pool])
    targets = np.concatenate([labels[train], np.full(pool.size, -1)])
    model.fit(features[rows], targets)
    return model.predict(features[test])


@functools.cache
def _finetune_config():
    """The pixel classifier's config, fine-tuning one tower without trees (read once)."""
    from pimc_jax.launcher import load_config

    config = load_config(str(ROOT / "configs" / "eval_pastis_classification.py"))
    config.protocol = "finetune"
    config.finetune.update(dict(ensemble_members=1, trees="none", log_every_steps=0))
    return config


def _finetune(params, series: np.ndarray, days: np.ndarray, labels, train, test) -> np.ndarray:
    """The plot tower fine-tuned on the ``train`` pixels (module docstring); test predictions.

    ``series`` is ``(P, T, C)`` reflectance with NaN gaps, ``days`` ``(T,)``.
    """
    from pimc_jax.evaluation.classification import classify
    from pimc_jax.evaluation.pixels import series_inputs
    from pimc_jax.evaluation.towers import plot_tower

    config = _finetune_config()

    def split(rows: np.ndarray) -> dict[str, np.ndarray]:
        values = series[rows]
        return {
            "bands": np.nan_to_num(values).astype(np.float32),
            "dates": np.broadcast_to(days, values.shape[:2]).astype(np.int32),
            "mask": np.isfinite(values).all(-1),
            "labels": labels[rows].astype(np.int32),
        }

    empty = split(np.zeros(0, np.int64))
    out = classify(
        config,
        params,
        plot_tower(params.spec),
        (split(train), empty, split(test)),
        int(labels.max()) + 1,
        features_fn=None,
        inputs_fn=series_inputs,
        band_names=params.spec.band_names,
    )
    return out["test_predictions"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init_from", default="", help="pre-training workdir or checkpoint")
    parser.add_argument("--patch", default=str(SLOVENIA))
    parser.add_argument("--k", default="5,10,20,50")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--block", type=int, default=8)
    parser.add_argument("--buffer", type=int, default=8)
    parser.add_argument(
        "--forest_features", default="rp,image", help="encode_patch outputs for *_forest"
    )
    parser.add_argument(
        "--linear_features",
        default="rp_features,image_features",
        help="encode_patch outputs for *_linear",
    )
    parser.add_argument(
        "--forest_components",
        type=int,
        default=0,
        help="each forest feature reduced to its first N principal components (0: all)",
    )
    parser.add_argument(
        "--trees",
        choices=("extra_trees", "forest"),
        default="extra_trees",
        help="every *forest row: extremely randomised trees (default) or a RandomForest",
    )
    parser.add_argument("--exclude", default="0", help="comma-separated classes left out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--finetune_draws", type=int, default=3, help="draws per k with the fine-tuned rows"
    )
    parser.add_argument(
        "--selftrain",
        type=int,
        default=0,
        help="*_selftrain rows: self-train each forest on this many unlabelled pixels (0: off)",
    )
    parser.add_argument("--selftrain_threshold", type=float, default=0.75)
    parser.add_argument("--rows", default="", help="comma-separated rows to run (default: all)")
    parser.add_argument(
        "--write_patch_folder",
        default="",
        help="only write --patch as a patch folder (for pre-training on it) and exit",
    )
    parser.add_argument("--json", default="")
    parser.add_argument(
        "--summary_of", nargs="+", default=[], metavar="JSON", help="pool earlier --json runs"
    )
    parser.add_argument("--figure", default="")
    args = parser.parse_args()
    if args.summary_of:  # pool the draws of earlier runs (e.g. other pre-training seeds)
        runs = [_merged(path.split("+")) for path in args.summary_of]
        pooled: dict[str, dict[str, list]] = {}
        for run in runs:
            for key, rows in run.items():
                for row, scores in rows.items():
                    pooled.setdefault(key, {}).setdefault(row, []).extend(scores)
        print(table(pooled))
        print("\n" + paired_table(runs))
        if args.figure:
            _figure(pooled, args.figure)
        return
    if args.write_patch_folder:
        write_patch_folder(load_patch(args.patch), args.write_patch_folder)
        return
    if not args.init_from:
        parser.error("--init_from is required")

    patch = load_patch(args.patch)
    pretrained = load_params(args.init_from)
    random = init_params(pretrained.spec, args.seed)
    names = [
        [n for n in value.split(",") if n] for value in (args.forest_features, args.linear_features)
    ]
    features = {
        "pretrained": embed(pretrained, patch, names, args.forest_components),
        "random": embed(random, patch, names, args.forest_components),
    }
    series = patch.reflectance().transpose(1, 2, 0, 3).reshape(-1, *patch.bands.shape[::3])
    labels = patch.labels.astype(np.int64).copy()
    excluded = [int(c) for c in args.exclude.split(",") if c]
    labels[np.isin(labels, excluded)] = -1
    flat = labels.reshape(-1)
    classes = np.unique(flat[flat >= 0])
    counts = {int(c): int(np.sum(flat == c)) for c in classes}
    print(f"patch {patch.patch_id}: {patch.bands.shape}, classes {counts}; features {names}")
    num_classes = int(classes.max()) + 1
    ks = [None if k == "all" else int(k) for k in args.k.split(",")]
    chosen_rows = [row for row in args.rows.split(",") if row]
    extra = args.trees == "extra_trees"
    if unknown := sorted(set(chosen_rows) - set(ROWS)):
        parser.error(f"--rows: unknown {unknown}; choose from {', '.join(ROWS)}")
    results: dict[str, dict[str, list]] = {}
    rng = np.random.default_rng(args.seed)
    for k in ks:
        key = "all" if k is None else str(k)
        results[key] = {
            row: []
            for row in ROWS
            if ("finetune" not in row or args.finetune_draws)
            and ("selftrain" not in row or args.selftrain)
            and (not chosen_rows or row in chosen_rows)
        }
        for d in range(args.draws):
            train, test = draw(labels, k, args.block, args.buffer, rng)
            if test.size == 0:  # every labelled pixel is within the buffer of a training one
                raise SystemExit(f"k={key}: no test pixel is farther than --buffer from training")
            raw = filled_features(series, train)
            pool_rng = np.random.default_rng([args.seed, d, k or 0])  # leaves the draws as they are
            pool = unlabelled_pool(labels.shape, train, test, args.buffer, args.selftrain, pool_rng)
            selftrain = functools.partial(
                _selftrain,
                labels=flat,
                train=train,
                pool=pool,
                test=test,
                seed=args.seed + d,
                threshold=args.selftrain_threshold,
                extra=extra,
            )
            fits = {
                "forest": functools.partial(_forest, raw, flat, train, test, args.seed + d, extra),
                "rf": functools.partial(_forest, raw, flat, train, test, args.seed + d, False),
                "selftrain": functools.partial(selftrain, raw),
            }
            for name in ("pretrained", "random"):
                forest_features, linear_features = features[name]
                both = np.concatenate([raw, forest_features], axis=-1)
                params = pretrained if name == "pretrained" else random
                fits |= {
                    f"{name}_forest": functools.partial(
                        _forest, both, flat, train, test, args.seed + d, extra
                    ),
                    f"{name}_embedding_forest": functools.partial(
                        _forest, forest_features, flat, train, test, args.seed + d, extra
                    ),
                    f"{name}_linear": functools.partial(
                        _linear, linear_features, flat, train, test
                    ),
                    f"{name}_selftrain": functools.partial(selftrain, both),
                }
                if d < args.finetune_draws:
                    fits[f"{name}_finetune"] = functools.partial(
                        _finetune, params, series, patch.dates, flat, train, test
                    )
            predictions = {row: fit() for row, fit in fits.items() if row in results[key]}
            for row, predicted in predictions.items():
                scores = classification_metrics(
                    confusion_matrix(flat[test], predicted, num_classes)
                )
                results[key][row].append((scores["overall_accuracy"], scores["macro_f1"]))
        cells = ", ".join(
            f"{row} {np.mean(scores, 0)[0]:.3f}" for row, scores in results[key].items()
        )
        print(f"k={key}: {train.size} training px, {test.size} test px; accuracy {cells}")
    print("\n" + table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.figure:
        _figure(results, args.figure)


def _merged(paths: list[str]) -> dict[str, dict[str, list]]:
    """One run from the ``--json`` files of runs over the same draws (same ``--seed``, other
    rows), e.g. ``extra0.json+rf0.json``; a row in several files is kept from the first."""
    merged: dict[str, dict[str, list]] = {}
    for path in paths:
        for key, rows in json.loads(Path(path).read_text()).items():
            for row, scores in rows.items():
                merged.setdefault(key, {}).setdefault(row, scores)
    return merged


def table(results: dict[str, dict[str, list]]) -> str:
    """Markdown: per ``k``, each row's accuracy / macro-F1 as mean ± std over the draws."""
    present = [row for row in ROWS if any(rows.get(row) for rows in results.values())]
    lines = ["| k per class | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    for key, rows in results.items():
        cells = []
        for row in present:
            if not rows.get(row):
                cells.append("–")
                continue
            (acc, f1), (sacc, sf1) = np.mean(rows[row], 0), np.std(rows[row], 0)
            cells.append(f"{acc:.3f} ± {sacc:.3f} / {f1:.3f} ± {sf1:.3f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PAIRS = (
    ("pretrained_forest", "random_forest"),
    ("pretrained_forest", "forest"),
    ("pretrained_forest", "rf"),
    ("pretrained_linear", "random_linear"),
    ("pretrained_finetune", "random_finetune"),
)


def paired_table(runs: list[dict[str, dict[str, list]]]) -> str:
    """Markdown: per ``k``, row minus row in points of accuracy over the same draws (each
    run's draws are paired by their order), mean ± standard error, and the draw count."""
    header = " | ".join(f"{a} − {b}" for a, b in PAIRS)
    lines = [f"| k per class | {header} |", "|---" * (len(PAIRS) + 1) + "|"]
    for key in runs[0]:
        cells = []
        for a, b in PAIRS:
            diffs = []
            for run in runs:
                rows = run.get(key, {})
                first, second = rows.get(a, []), rows.get(b, [])
                n = min(len(first), len(second))
                diffs += [100 * (x[0] - y[0]) for x, y in zip(first[:n], second[:n], strict=True)]
            if not diffs:
                cells.append("–")
                continue
            error = np.std(diffs, ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else np.nan
            cells.append(f"{np.mean(diffs):+.1f} ± {error:.1f} (n={len(diffs)})")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(results: dict[str, dict[str, list]], path: str) -> None:
    """Accuracy and macro-F1 against labels per class, mean ± std over draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    x = np.arange(len(keys))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for metric, ax in enumerate(axes):
        for row in ROWS:
            if not all(results[k].get(row) for k in keys):
                continue
            values = [np.asarray(results[k][row])[:, metric] for k in keys]
            means, spreads = [v.mean() for v in values], [v.std() for v in values]
            ax.errorbar(x, means, yerr=spreads, label=row, capsize=3, marker="o")
        ax.set_xticks(x, keys)
        ax.set_xlabel("labelled pixels per class")
        ax.set_ylabel(("accuracy", "macro-F1")[metric])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    parallel.set_xla_cpu_flags()  # before JAX starts its backends
    main()
