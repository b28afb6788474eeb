"""Which pairing pre-trains the better image towers: S1 ↔ S2, augmentation only, PIMC, random.

    python bench/segmentation_table.py --task landcover --seeds 0,1,2 --root /tmp/seg
    python bench/segmentation_table.py --task floods --seeds 0,1,2 --root /tmp/seg
    python bench/segmentation_table.py --task landcover --root /tmp/seg --summary_only

For each seed, pre-trains the three pairings with the default loop and loss on the task's
stand-in data (``landcover``: the synthetic PASTIS-like patches, with synthetic radar for
S1 ↔ S2; ``floods``: the synthetic flood scenes, 64-px patches), each with the config's
defaults (300 steps), then runs the segmentation evaluation (``eval_landcover`` /
``eval_floods``) of every encoder, and of a random one, for each tower it has
(``s2_image``; ``s1_image`` for S1 ↔ S2 and random) and each protocol (``linear``,
``finetune``), all with ``--config.seed`` = the seed. Runs already done (their
``results.json`` exists) are not repeated. Prints a markdown table of mean ± standard
deviation over seeds of the test metric (landcover: mIoU and overall accuracy; floods:
water IoU on test and valid), and the same linear head on the view's raw input channels.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAIRINGS = {
    "s1s2": ("pretrain_s1s2", "S1 ↔ S2 (`s1_image` ↔ `s2_image`, Jain et al.)"),
    "aug": ("pretrain_augment", "augmentation only (`s2_image_aug` ↔ `s2_image`)"),
    "pimc": ("pretrain", "PIMC (`s2_rp` ↔ `s2_image`)"),
    "random": (None, "random init"),
}
TASKS = {
    "landcover": dict(
        config="eval_landcover",
        pretrain_flags=(),
        metrics=("miou_test", "overall_accuracy_test"),
        s1_flags=("--config.data.s1=both",),
    ),
    "floods": dict(
        config="eval_floods",
        pretrain_flags=("--config.data.name=synthetic_floods", "--config.data.patch_size=64"),
        metrics=("iou_water_test", "iou_water_valid"),
        s1_flags=(),
    ),
}
PROTOCOLS = ("linear", "finetune")


def _launch(config: str, workdir: Path, flags: list[str]) -> None:
    command = [sys.executable, "launch.py", f"--config=configs/{config}.py", *flags]
    command.append(f"--workdir={workdir}")
    print("$", " ".join(command[1:]), flush=True)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")


def _runs(task: str) -> list[tuple[str, str, str]]:
    """(pairing, tower, protocol) of every evaluation."""
    runs = []
    for pairing in PAIRINGS:
        towers = ("s2_image", "s1_image") if pairing in ("s1s2", "random") else ("s2_image",)
        runs += [(pairing, tower, protocol) for tower in towers for protocol in PROTOCOLS]
    return runs


def run_seed(task: str, seed: int, root: Path) -> None:
    spec = TASKS[task]
    base = root / task / f"seed{seed}"
    for pairing, (config, _) in PAIRINGS.items():
        if config is None or (base / pairing / "checkpoints").exists():
            continue
        flags = [f"--config.seed={seed}", *spec["pretrain_flags"]]
        _launch(config, base / pairing, flags)
    for pairing, tower, protocol in _runs(task):
        workdir = base / f"eval_{pairing}_{tower}_{protocol}"
        if (workdir / "results.json").exists():
            continue
        init = "random" if pairing == "random" else str(base / pairing)
        flags = [
            f"--config.init_from={init}",
            f"--config.tower={tower}",
            f"--config.protocol={protocol}",
            f"--config.seed={seed}",
        ]
        if tower == "s1_image":
            flags += list(spec["s1_flags"])
            if pairing == "random":
                flags.append("--config.model.views=('s1_image','s2_image')")
        _launch(spec["config"], workdir, flags)


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def summary(task: str, root: Path, seeds: list[int]) -> str:
    spec = TASKS[task]
    metrics = spec["metrics"]
    columns = [(t, p, m) for t in ("s2_image", "s1_image") for p in PROTOCOLS for m in metrics]
    header = "| encoder | " + " | ".join(f"`{t}` {p} {m}" for t, p, m in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    raw: dict[tuple[str, str], list[float]] = {}
    for pairing, (_, name) in PAIRINGS.items():
        cells = []
        for tower, protocol, metric in columns:
            values = []
            for seed in seeds:
                path = root / task / f"seed{seed}" / f"eval_{pairing}_{tower}_{protocol}"
                if not (path / "results.json").exists():
                    continue
                found = json.loads((path / "results.json").read_text())["metrics"]
                values.append(found[metric])
                if protocol == "linear" and pairing == "random":
                    raw_metric = metric.replace("_test", "_test_raw_pixels").replace(
                        "_valid", "_valid_raw_pixels"
                    )
                    if raw_metric in found:
                        raw.setdefault((tower, metric), []).append(found[raw_metric])
            cells.append(_cell(values))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    raw_cells = [_cell(raw.get((t, m), [])) if p == "linear" else "–" for t, p, m in columns]
    lines.append("| linear head on the raw input channels | " + " | ".join(raw_cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--root", default="/tmp/segmentation_table")
    parser.add_argument("--summary_only", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    root = Path(args.root)
    if not args.summary_only:
        for seed in seeds:
            run_seed(args.task, seed, root)
    print(summary(args.task, root, seeds))


if __name__ == "__main__":
    main()
