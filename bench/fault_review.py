"""An operator's review: run the faults people meet, as they would, and tabulate the outcomes.

    python bench/fault_review.py [--out DIR] [--groups signals,damage,...] [--markdown F.md]

Every case runs ``launch.py`` in a fresh process on one CPU device (the tiny configs) and is
judged from the outside, by what an operator sees and what is left on disk:

- **clean**: the run did the right thing (a resumed run ends bit-identical to an
  uninterrupted one, each step once in ``metrics.jsonl``), or stopped with a non-zero exit
  and one ``FATAL`` line, no traceback;
- **silently wrong**: exit 0 (or a resume that "worked") with a wrong result: different final
  parameters, a step logged twice, a non-finite checkpoint saved, a case that should have
  been refused and ran;
- **crashed**: a Python traceback, a hang past the case's time limit, or an error that is
  not one line;
- **lost**: a checkpoint step that was intact before the case is gone or unreadable after it.

Groups: ``signals`` (kill -9, SIGTERM and Ctrl-C at chosen steps, then a rerun),
``damage`` (the newest checkpoint damaged in several ways, then a rerun and ``load_params``),
``nonfinite`` (a learning rate that diverges), ``lock`` (two runs into one workdir),
``config`` (nonsense config values), ``data`` (nonsense pixel files) and ``poll`` (an
evaluation polling a run whose newest step is corrupt). Not covered: a full disk (needs a
small mounted filesystem; ``tests/test_reliability.py`` injects the ``OSError`` instead).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pimc_jax import parallel  # noqa: E402

STEPS = 24  # the reference run: configs/pretrain.py:tiny, 24 steps, a checkpoint every 2
BASE = [f"--config.total_steps={STEPS}", "--config.keep_checkpoints=20"]
OUTCOMES = ("clean", "silently wrong", "crashed", "lost")


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="",
        JAX_COMPILATION_CACHE_DIR=str(ROOT / ".jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1",
    )


def _command(config: str, workdir: Path | None, *flags: str) -> list[str]:
    command = [sys.executable, "launch.py", f"--config=configs/{config}", *flags]
    return command if workdir is None else [*command, f"--workdir={workdir}"]


def launch(config: str, workdir: Path | None, *flags: str, timeout: float = 300) -> dict:
    """``python launch.py --config=configs/<config> FLAGS --workdir=W``; its exit code and
    output (``rc`` None: killed at ``timeout``)."""
    command = _command(config, workdir, *flags)
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout
        )
        return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    except subprocess.TimeoutExpired as expired:
        return {"rc": None, "stdout": "", "stderr": str(expired.stderr or "")}


def start(config: str, workdir: Path, *flags: str) -> subprocess.Popen:
    """:func:`launch` in the background."""
    return subprocess.Popen(
        _command(config, workdir, *flags),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def steps_logged(workdir: Path) -> list[int]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def intact_steps(workdir: Path) -> dict[int, np.ndarray]:
    """Every checkpoint step of ``workdir`` that loads on its own, as its flat parameters."""
    from pimc_jax.checkpoint import load_params

    out = {}
    folder = workdir / "checkpoints"
    for step_dir in sorted(folder.iterdir()) if folder.exists() else ():
        if not step_dir.name.isdigit():
            continue
        try:
            params = load_params(step_dir)
        except Exception:  # noqa: BLE001 (an unreadable step is what this looks for)
            continue
        leaves = [np.asarray(x, np.float64).ravel() for x in _leaves(params.variables)]
        out[int(step_dir.name)] = np.concatenate(leaves)
    return out


def _leaves(tree) -> list:
    import jax

    return jax.tree.leaves(tree)


def fatal_one_line(result: dict) -> bool:
    """Non-zero exit, no traceback, exactly one ``FATAL`` line."""
    text = result["stderr"] + result["stdout"]
    fatal = [line for line in text.splitlines() if "FATAL" in line]
    return result["rc"] not in (0, None) and "Traceback" not in text and len(fatal) == 1


def judge_refusal(result: dict, expect: str = "") -> tuple[str, str]:
    text = result["stderr"] + result["stdout"]
    fatal = next((line for line in text.splitlines() if "FATAL" in line), "")
    if result["rc"] is None:
        return "crashed", "hung past the time limit"
    if "Traceback" in text:
        return "crashed", "traceback: " + text.strip().splitlines()[-1][:150]
    if result["rc"] == 0:
        return "silently wrong", "exit 0: ran without a word"
    if not fatal_one_line(result):
        return "crashed", f"exit {result['rc']} without one FATAL line"
    if expect and expect.lower() not in fatal.lower():
        return "crashed", f"the FATAL line does not name {expect!r}: {fatal[:150]}"
    return "clean", fatal[:160]


class Review:
    def __init__(self, out: Path):
        self.out = out
        self.rows: list[tuple[str, str, str, str]] = []
        self._reference: dict[int, np.ndarray] | None = None

    def record(self, group: str, case: str, outcome: str, detail: str) -> None:
        assert outcome in OUTCOMES
        self.rows.append((group, case, outcome, detail))
        print(f"[{group}] {case}: {outcome} — {detail}", flush=True)

    def reference(self) -> dict[int, np.ndarray]:
        """The uninterrupted run's parameters at every checkpoint step."""
        if self._reference is None:
            workdir = self.out / "reference"
            shutil.rmtree(workdir, ignore_errors=True)
            done = launch("pretrain.py:tiny", workdir, *BASE)
            assert done["rc"] == 0, done["stderr"][-2000:]
            self._reference = intact_steps(workdir)
        return self._reference

    def judge_resumed(self, group: str, case: str, workdir: Path, before: dict, rerun: dict):
        """After a rerun to ``STEPS``: the final parameters, the log, and the steps that were
        intact before."""
        text = rerun["stderr"] + rerun["stdout"]
        after = intact_steps(workdir)
        lost = [s for s, p in before.items() if s not in after or not np.array_equal(after[s], p)]
        logged = steps_logged(workdir)
        final = after.get(STEPS)
        if lost:
            return self.record(group, case, "lost", f"steps {lost} intact before, not after")
        if rerun["rc"] is None or "Traceback" in text:
            return self.record(group, case, "crashed", "the rerun: " + text.strip()[-150:])
        if rerun["rc"] != 0 or final is None:
            return self.record(group, case, "crashed", f"the rerun exits {rerun['rc']}")
        if not np.array_equal(final, self.reference()[STEPS]):
            return self.record(group, case, "silently wrong", "final parameters differ")
        if sorted(set(logged)) != logged or len(logged) != len(set(logged)):
            return self.record(group, case, "silently wrong", "a step logged twice")
        self.record(group, case, "clean", "resumed bit-identical, each step logged once")


def signals(review: Review) -> None:
    review.reference()
    kinds = (("kill -9", signal.SIGKILL), ("SIGTERM", signal.SIGTERM), ("Ctrl-C", signal.SIGINT))
    for name, sig in kinds:
        # kill -9 before, at and between checkpoints (every 2 steps), also near the end.
        for after_step in (1, 2, 3, 5, 8, 13, 17, 21, 23) if sig == signal.SIGKILL else (3, 9, 17):
            workdir = review.out / f"signal_{sig.value}_{after_step}"
            shutil.rmtree(workdir, ignore_errors=True)
            process = start("pretrain.py:tiny", workdir, *BASE)
            deadline = time.time() + 240
            while time.time() < deadline and process.poll() is None:
                if steps_logged(workdir)[-1:] and steps_logged(workdir)[-1] >= after_step:
                    break
                time.sleep(0.05)
            process.send_signal(sig)
            _, stderr = process.communicate(timeout=120)
            case = f"{name} after step {after_step}"
            if sig != signal.SIGKILL and "Traceback" in stderr:
                review.record("signals", case, "crashed", "traceback on the signal")
                continue
            if sig == signal.SIGINT and process.returncode != 130:
                review.record("signals", case, "crashed", f"exit {process.returncode}, not 130")
                continue
            before = intact_steps(workdir)
            rerun = launch("pretrain.py:tiny", workdir, *BASE)
            review.judge_resumed("signals", case, workdir, before, rerun)


def _largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "commit marker deleted": lambda d: (d / "commit_success.txt").unlink(),
    "checkpoint metadata deleted": lambda d: (d / "_CHECKPOINT_METADATA").unlink(),
    "params array file truncated": lambda d: os.truncate(_largest_file(d / "params"), 10),
    "params array bytes flipped": lambda d: _flip(_largest_file(d / "params")),
    "params folder deleted": lambda d: shutil.rmtree(d / "params"),
    "opt_state array bytes flipped": lambda d: _flip(_largest_file(d / "opt_state")),
    "meta emptied": lambda d: [p.write_bytes(b"") for p in (d / "meta").rglob("*") if p.is_file()],
    "whole step folder emptied": lambda d: [
        shutil.rmtree(p) if p.is_dir() else p.unlink() for p in d.iterdir()
    ],
}


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def damage(review: Review) -> None:
    reference = review.out / "reference"
    review.reference()
    from pimc_jax.checkpoint import load_params

    for case, hurt in DAMAGE.items():
        workdir = review.out / ("damage_" + case.replace(" ", "_"))
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.copytree(reference, workdir)
        hurt(workdir / "checkpoints" / str(STEPS))
        before = intact_steps(workdir)
        try:  # what an encode user gets meanwhile: the newest intact step
            loaded = load_params(workdir)
            flat = np.concatenate(
                [np.asarray(x, np.float64).ravel() for x in _leaves(loaded.variables)]
            )
            if not any(np.array_equal(flat, p) for p in before.values()):
                review.record(
                    "damage", case + " (load_params)", "silently wrong", "not an intact step"
                )
            else:
                review.record("damage", case + " (load_params)", "clean", "the newest intact step")
        except Exception as error:  # noqa: BLE001
            review.record("damage", case + " (load_params)", "crashed", repr(error)[:150])
        rerun = launch("pretrain.py:tiny", workdir, *BASE)
        aside = list((workdir / "checkpoints").glob(f"{STEPS}.corrupt-*"))
        if STEPS not in before and not aside:  # an unreadable step is kept, never deleted
            review.record("damage", case + " (rerun)", "lost", "the damaged step was deleted")
            continue
        review.judge_resumed("damage", case + " (rerun)", workdir, before, rerun)


def nonfinite(review: Review) -> None:
    workdir = review.out / "nonfinite"
    shutil.rmtree(workdir, ignore_errors=True)
    result = launch("pretrain.py:tiny", workdir, *BASE, "--config.optimizer.learning_rate=1e10")
    outcome, detail = judge_refusal(result)
    folder = workdir / "checkpoints"
    saved = [p for p in folder.iterdir() if p.name.isdigit()] if folder.exists() else []
    bad = [p.name for p in saved if not _finite_step(p)]
    if bad:
        outcome, detail = "silently wrong", f"non-finite steps saved: {bad}"
    review.record("nonfinite", "learning_rate=1e10", outcome, detail)


def _finite_step(step_dir: Path) -> bool:
    from pimc_jax.checkpoint import load_params

    try:
        params = load_params(step_dir)
    except Exception:  # noqa: BLE001 (refused: not loaded as good)
        return True
    return all(np.all(np.isfinite(np.asarray(x))) for x in _leaves(params.variables))


def lock(review: Review) -> None:
    workdir = review.out / "lock"
    shutil.rmtree(workdir, ignore_errors=True)
    # A long first run, so that it is still training when the second one starts.
    first = start("pretrain.py:tiny", workdir, "--config.total_steps=100000")
    while not steps_logged(workdir) and first.poll() is None:
        time.sleep(0.05)
    second = launch("pretrain.py:tiny", workdir, *BASE)
    still_running = first.poll() is None
    first.send_signal(signal.SIGTERM)  # the operator stops the first run: it saves and exits
    _, first_err = first.communicate(timeout=300)
    outcome, detail = judge_refusal(second, "in use")
    if not still_running:
        outcome, detail = "crashed", "the first run stopped while the second started"
    elif "Traceback" in first_err:
        outcome, detail = "crashed", "the first run: " + first_err.strip()[-150:]
    elif not intact_steps(workdir):
        outcome, detail = "lost", "the first run saved nothing on SIGTERM"
    review.record("lock", "a second run into a running workdir", outcome, detail)


CONFIGS = [
    ("global_batch_size=1", "--config.global_batch_size=1"),
    ("learning_rate=-1", "--config.optimizer.learning_rate=-1"),
    ("learning_rate=nan", "--config.optimizer.learning_rate=nan"),
    ("weight_decay=nan", "--config.optimizer.weight_decay=nan"),
    ("warmup_steps > total_steps", "--config.optimizer.warmup_steps=100"),
    ("data.max_dates=1", "--config.data.max_dates=1"),
    ("grad_clip_norm=-1", "--config.optimizer.grad_clip_norm=-1"),
    ("b1=2", "--config.optimizer.b1=2"),
    ("global_batch_size=10^12", "--config.global_batch_size=1000000000000"),
    ("unknown key", "--config.optimiser.learning_rate=1"),
    ("total_steps=abc", "--config.total_steps=abc"),
    ("total_steps=-5", "--config.total_steps=-5"),
    ("checkpoint_every_steps=0", "--config.checkpoint_every_steps=0"),
    ("keep_checkpoints=0", "--config.keep_checkpoints=0"),
    ("data.crop_size=0", "--config.data.crop_size=0"),
    ("temperature=0", "--config.model.temperature=0"),
    ("model.views unknown", "--config.model.views=('s2_rp','s3_image')"),
    ("data.name unknown", "--config.data.name=sentinel9"),
]


def config(review: Review) -> None:
    for case, flag in CONFIGS:
        workdir = review.out / "config"
        shutil.rmtree(workdir, ignore_errors=True)
        review.record("config", case, *judge_refusal(launch("pretrain.py:tiny", workdir, flag)))


def _pixels(rng: np.random.Generator, **change) -> dict:
    n, t = 60, 8
    arrays = dict(
        bands=rng.uniform(0.02, 0.5, (n, t, 4)).astype(np.float32),
        band_names=np.array(["B2", "B3", "B4", "B8"]),
        dates=np.array([f"2021-{m:02d}-15" for m in range(1, t + 1)]),
        labels=np.arange(n) % 3,
    )
    arrays.update(change)
    return arrays


def data(review: Review) -> None:
    rng = np.random.default_rng(0)
    good = _pixels(rng)
    all_nan = good["bands"].copy()
    all_nan[..., 1] = np.nan
    cases = {
        "digital numbers, no scale": _pixels(rng, bands=(good["bands"] * 10000).astype(np.float32)),
        "a band without any value": _pixels(rng, bands=all_nan),
        "scale=0": _pixels(rng, bands=good["bands"] * 10000, scale=np.float32(0)),
        "scale=-10000": _pixels(rng, bands=good["bands"] * 10000, scale=np.float32(-10000)),
        "one class": _pixels(rng, labels=np.zeros(60, int)),
        "dates not increasing": _pixels(rng, dates=good["dates"][::-1]),
        "labels of the wrong length": _pixels(rng, labels=np.arange(59) % 3),
        "band_names too short": _pixels(rng, band_names=np.array(["B2", "B3", "B4"])),
    }
    for case, arrays in cases.items():
        path = review.out / "pixels.npz"
        np.savez(path, **arrays)
        workdir = review.out / "data"
        shutil.rmtree(workdir, ignore_errors=True)
        result = launch(
            "eval_pastis_classification.py:tiny",
            workdir,
            "--config.data.name=npz",
            f"--config.data.path={path}",
        )
        if case == "a band without any value":  # dropped with a warning, then it runs
            text = result["stderr"] + result["stdout"]
            ok = result["rc"] == 0 and "hold no value" in text and "Traceback" not in text
            review.record("data", case, "clean" if ok else "crashed", "dropped with a warning")
            continue
        review.record("data", case, *judge_refusal(result))


def poll(review: Review) -> None:
    reference = review.out / "reference"
    review.reference()
    workdir = review.out / "poll_run"
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.copytree(reference, workdir)
    _flip(_largest_file(workdir / "checkpoints" / str(STEPS) / "params"))
    started = time.time()
    result = launch(
        "eval_pastis_classification.py:tiny",
        review.out / "poll_eval",
        f"--config.init_from={workdir}",
        "--config.poll=True",
        "--config.poll_interval_s=1",
        "--config.poll_timeout_s=600",
        timeout=300,
    )
    seconds = time.time() - started
    text = result["stderr"] + result["stdout"]
    if result["rc"] is None or seconds > 120:
        outcome, detail = "crashed", f"waited {seconds:.0f} s"
    elif "Traceback" in text:
        outcome, detail = "crashed", "traceback"
    elif result["rc"] == 0 and "corrupt" not in text.lower():
        outcome, detail = "silently wrong", "exit 0 without naming the corrupt final step"
    else:
        outcome, detail = "clean", f"stopped after {seconds:.0f} s naming the corrupt step"
    review.record("poll", "polling a run whose final step is corrupt", outcome, detail)


GROUPS = {f.__name__: f for f in (signals, damage, nonfinite, lock, config, data, poll)}


def markdown(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| group | case | outcome | what the operator sees |", "|---|---|---|---|"]
    lines += [f"| {g} | {c} | {o} | {d.replace('|', '/')} |" for g, c, o, d in rows]
    counts = {o: sum(r[2] == o for r in rows) for o in OUTCOMES}
    lines += ["", f"{len(rows)} cases: " + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/fault_review", help="scratch folder")
    parser.add_argument("--groups", default=",".join(GROUPS))
    parser.add_argument("--markdown", default="", help="also write the table here")
    args = parser.parse_args()
    parallel.set_xla_cpu_flags()
    review = Review(Path(args.out))
    review.out.mkdir(parents=True, exist_ok=True)
    for name in args.groups.split(","):
        GROUPS[name](review)
    table = markdown(review.rows)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()
