"""Pairs/s of the pre-training step on 1 vs N devices, and against eager PyTorch.

    python bench/train_step.py                       # default config, 1 vs 4 forced CPU devices
    python bench/train_step.py --config=configs/pretrain_pastis.py --devices=1  # on a GPU
    python bench/train_step.py --vs-torch            # JAX/PyTorch, default and ResNet-18 layouts
    python bench/train_step.py --flag_sets="default|none|--xla_cpu_use_onednn=true" --rounds 2

Each device count runs in its own process (XLA fixes the CPU device count at start-up),
all with the same global batch drawn by the real input pipeline. Per setting it reports
the median step time, pairs/s, and the time of the recurrence-plot computation alone
(the same jitted ``series_to_plots`` the step calls, on one device's share of the batch)
as a share of the step. On CPU, forced devices share the same cores: the 1-vs-N ratio
shows the overhead of the data-parallel program, not a speed-up.

``--vs-torch`` (needs the ``bench`` extra, PyTorch) runs one process per layout on one
device: ``default`` (the config as it is) and ``resnet18`` (four stages of two blocks,
widths 16/32/64/128, 32×32 plots, 32×32 crops of all ten bands, batch 64). In that one
process it alternates three steps on the same batch, round after round:

* ``jax step``: the training step as training runs it (plots made inside the step,
  crop augmentation, mapped over the device);
* ``jax model``: the same work as the PyTorch step, on the same precomputed plots and
  standardised crops: both towers, InfoNCE, backward, clipping and AdamW, jitted;
* ``torch``: :mod:`torch_reference` (eager, channels-last), parameters copied from the
  JAX model.

``--flag_sets`` compares XLA:CPU flag settings on one device: sets separated by ``|``,
each ``default`` (:data:`pimc_jax.parallel.XLA_CPU_FLAGS`, what ``launch.py`` sets),
``none`` (no flag at all) or XLA flags, which replace a default flag of the same name and
keep the others; every set runs in its own process, the sets in turn, ``--rounds`` times,
and the table gives each set's step time per round and against ``default``.

It prints median step times with the spread (min–max over the rounds), the step-time
ratios JAX/PyTorch on the medians (above 1: JAX is slower) and the speed ratio at each
side's fastest round (above 1: JAX is faster; README's headline). ``--breakdown`` adds
forward and forward+backward times per tower in both frameworks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Overrides of the "resnet18" layout (on top of the config and any --set).
RESNET18 = {
    "global_batch_size": 64,
    "model.rp_size": 32,
    "data.crop_size": 32,
    "data.image_bands": ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"],
    **{
        f"model.{tower}.{key}": value
        for tower in ("rp_encoder", "image_encoder")
        for key, value in {
            "stage_sizes": [2, 2, 2, 2],
            "widths": [16, 32, 64, 128],
            "stem_width": 16,
        }.items()
    },
}
LAYOUTS = {"default": {}, "resnet18": RESNET18}


def _child(config_path: str, repeats: int, overrides: list[str]) -> dict:
    import jax
    from _harness import median_seconds, parallel_step_runner

    from pimc_jax.data.pipeline import PairBatches
    from pimc_jax.preprocessing import series_to_plots
    from pimc_jax.train import build_pretraining

    config = _load_config(config_path, overrides)
    setup = build_pretraining(config)
    batch = next(
        PairBatches(setup.sampler, batch_size=config.global_batch_size, seed=0, end_step=1)
    )
    run_step, sharded = parallel_step_runner(config, setup, batch)
    step_time = median_seconds(run_step, repeats)
    local = {k: v[0] for k, v in sharded.items()}
    plots = jax.jit(lambda b, d, m: series_to_plots(setup.spec, b, d, m))
    rp_time = median_seconds(lambda: plots(local["bands"], local["dates"], local["mask"]), repeats)
    return {
        "devices": jax.local_device_count(),
        "global_batch": config.global_batch_size,
        "step_s": step_time,
        "pairs_per_s": config.global_batch_size / step_time,
        "rp_s_per_device": rp_time,
        "rp_share": rp_time / step_time,
        "platform": jax.devices()[0].platform,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _spread(times: list[float]) -> dict:
    import numpy as np

    return {"median": float(np.median(times)), "min": min(times), "max": max(times)}


def _prepare(config_path: str, overrides: list[str]) -> dict:
    """What both workers start from: the config, setup, one batch, its plots and crops."""
    import numpy as np

    from pimc_jax.data.pipeline import PairBatches
    from pimc_jax.preprocessing import normalize_crops, series_to_plots
    from pimc_jax.train import build_pretraining

    config = _load_config(config_path, overrides)
    setup = build_pretraining(config)
    batch = next(
        PairBatches(setup.sampler, batch_size=config.global_batch_size, seed=0, end_step=1)
    )
    spec = setup.spec
    plots = np.asarray(series_to_plots(spec, batch["bands"], batch["dates"], batch["mask"]))
    crops = np.asarray(normalize_crops(spec, batch["image"]))
    return {"config": config, "setup": setup, "batch": batch, "plots": plots, "crops": crops}


def _jax_fns(prepared: dict, breakdown: bool) -> dict:
    """``jax step`` (the training step as training runs it) and ``jax model`` (the work of
    the PyTorch step, jitted), plus per-tower forward / forward+backward with ``breakdown``."""
    import jax
    import jax.numpy as jnp
    import optax
    from _harness import parallel_step_runner

    from pimc_jax.loss import symmetric_infonce
    from pimc_jax.models import PIMC
    from pimc_jax.step import create_train_state

    config, setup = prepared["config"], prepared["setup"]
    spec, optimizer = setup.spec, setup.optimizer
    run_step, _ = parallel_step_runner(config, setup, prepared["batch"])
    plots, crops = jnp.asarray(prepared["plots"]), jnp.asarray(prepared["crops"])
    model = PIMC(spec)

    def model_step(state, plots, crops):
        def loss_fn(params):
            out = model.apply(params, plots, crops)
            return symmetric_infonce(out["z_rp"], out["z_image"], out["temperature"])[0]

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state.replace(params=params, opt_state=opt_state), loss

    state = create_train_state(spec, optimizer, jax.random.key(0))
    params = jax.tree.map(jnp.copy, state.params)  # the jitted step donates `state`
    jitted = jax.jit(model_step, donate_argnums=0)

    def jax_model() -> None:
        nonlocal state
        state, loss = jitted(state, plots, crops)
        jax.block_until_ready(loss)

    fns = {"jax step": lambda: jax.block_until_ready(run_step()), "jax model": jax_model}
    if breakdown:
        towers = {"rp": (PIMC.encode_rp, plots), "image": (PIMC.encode_image, crops)}
        for tower, (method, x) in towers.items():

            def loss(p, x=x, method=method):
                return jnp.sum(model.apply(p, x, method=method)[1] ** 3)

            fwd = jax.jit(lambda p, x=x, method=method: model.apply(p, x, method=method)[1])
            bwd = jax.jit(jax.grad(loss))
            fns[f"jax {tower} fwd"] = lambda f=fwd: jax.block_until_ready(f(params))
            fns[f"jax {tower} fwd+bwd"] = lambda f=bwd: jax.block_until_ready(f(params))
    return fns


def _torch_fns(prepared: dict, breakdown: bool) -> dict:
    """``torch``: :mod:`torch_reference`'s step from the JAX model's initial parameters,
    plus per-tower forward / forward+backward with ``breakdown``."""
    import jax
    import torch
    import torch_reference

    from pimc_jax.models import init_params

    config, spec = prepared["config"], prepared["setup"].spec
    opt = config.optimizer
    step = torch_reference.make_step(
        spec,
        learning_rate=opt.learning_rate,
        weight_decay=opt.weight_decay,
        grad_clip_norm=opt.grad_clip_norm,
        betas=(opt.b1, opt.b2),
        variables=init_params(spec, jax.random.key(0)).variables,
    )
    plots, crops = step.inputs(prepared["plots"], prepared["crops"])
    fns = {"torch": lambda: step(plots, crops)}
    if breakdown:
        for tower, x in {"rp": plots, "image": crops}.items():
            encoder = getattr(step.model, f"{tower}_encoder")
            head = getattr(step.model, f"{tower}_head")

            def fwd(encoder=encoder, head=head, x=x) -> None:
                with torch.no_grad():
                    head(encoder(x))

            def bwd(encoder=encoder, head=head, x=x) -> None:
                step.model.zero_grad(set_to_none=True)
                (head(encoder(x)) ** 3).sum().backward()

            fns[f"torch {tower} fwd"] = fwd
            fns[f"torch {tower} fwd+bwd"] = bwd
    return fns


def _worker(kind: str, config_path: str, overrides: list[str], breakdown: bool) -> None:
    """A lock-step worker: after warm-up it prints ``READY``, then for each line ``K`` on
    stdin runs each of its functions ``K`` times, round-robin, and prints their times."""
    prepared = _prepare(config_path, overrides)
    fns = (_jax_fns if kind == "jax" else _torch_fns)(prepared, breakdown)
    for fn in fns.values():  # compilation and warm-up
        fn()
        fn()
    meta = {"global_batch": prepared["config"].global_batch_size}
    if kind == "torch":
        import torch

        meta["torch_threads"] = torch.get_num_threads()
    print("READY", json.dumps(meta), flush=True)
    for line in sys.stdin:
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(int(line)):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        print("TIMES", json.dumps(times), flush=True)


def _read(process: subprocess.Popen, log: Any, tag: str) -> dict:
    for line in process.stdout:
        if line.startswith(tag):
            return json.loads(line[len(tag) :])
    process.wait()
    log.seek(0)
    sys.exit(f"a worker stopped:\n{log.read()[-4000:]}")


def _compare(args: argparse.Namespace, overrides: list[str]) -> tuple[dict, dict]:
    """JAX and PyTorch in two processes (their thread pools never share one), in lock step:
    each round one worker runs ``--per-round`` steps while the other waits."""
    workers, logs = {}, {}
    for kind in ("jax", "torch"):
        command = [sys.executable, __file__, f"--worker={kind}", "--config", args.config]
        command += ["--breakdown"] if args.breakdown else []
        command += [f"--set={s}" for s in overrides]
        logs[kind] = tempfile.TemporaryFile("w+")
        workers[kind] = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=logs[kind],
            text=True,
        )
    meta: dict = {}
    try:
        for kind, process in workers.items():
            meta.update(_read(process, logs[kind], "READY"))
        times: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for kind, process in workers.items():
                time.sleep(0.2)  # let the other side's threads go idle
                process.stdin.write(f"{args.per_round}\n")
                process.stdin.flush()
                for name, values in _read(process, logs[kind], "TIMES").items():
                    times.setdefault(name, []).extend(values)
    finally:
        for kind, process in workers.items():
            process.stdin.close()
            process.wait(timeout=60)
            logs[kind].close()
    return meta, {name: _spread(values) for name, values in times.items()}


def _vs_torch(args: argparse.Namespace) -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    print(f"config: {args.config}  XLA_FLAGS: {flags or '(none)'}")
    for layout in args.layouts.split(","):
        # The layout's overrides go first, so that --set can change them.
        pre = [f"{key}={json.dumps(value)}" for key, value in LAYOUTS[layout].items()]
        meta, times = _compare(args, pre + args.set)
        print(
            f"\nlayout: {layout}  batch: {meta['global_batch']}  "
            f"torch threads: {meta['torch_threads']}  "
            f"samples: {args.repeats} rounds x {args.per_round}"
        )
        print(f"{'':>22} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
        for name, t in times.items():
            print(
                f"{name:>22} {1e3 * t['median']:>10.1f} {1e3 * t['min']:>8.1f} "
                f"{1e3 * t['max']:>8.1f}"
            )
        torch_s = times["torch"]["median"]
        for name in ("jax step", "jax model"):
            print(f"step time {name}/torch ({layout}): {times[name]['median'] / torch_s:.2f}x")
        # Speed (above 1: JAX is faster) at each side's fastest round: on a shared machine
        # the minima are the fair comparison, the medians mostly measure the other load.
        fastest = times["torch"]["min"] / times["jax step"]["min"]
        print(f"speed JAX/torch at the fastest runs ({layout}): {fastest:.2f}x")


def _load_config(config_path: str, overrides: list[str]):
    from pimc_jax.launcher import load_config

    config = load_config(ROOT / config_path)
    values = {}
    for item in overrides:
        key, value = item.split("=", 1)
        value = json.loads(value)
        values[key] = tuple(value) if isinstance(value, list) else value
    config.update_from_flattened_dict(values)
    return config


def _run_child(
    args: argparse.Namespace, xla_flags: str, extra: list[str], env: dict | None = None
) -> dict:
    env = dict(os.environ, **(env or {}), XLA_FLAGS=xla_flags)
    command = [
        sys.executable,
        __file__,
        "--child",
        "--config",
        args.config,
        "--repeats",
        str(args.repeats),
        *extra,
    ] + [f"--set={s}" for s in args.set]
    out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"child {extra} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.split("RESULT", 1)[1])


def _flag_sets(args: argparse.Namespace) -> None:
    """One-device step time under each XLA flag set, the sets in turn, ``args.rounds`` times."""
    sets = [item.strip() for item in args.flag_sets.split("|")]
    times: dict[str, list[float]] = {name: [] for name in sets}
    seen: dict[str, str] = {}
    for _ in range(args.rounds):
        for name in sets:
            flags, env = "", {}
            if name == "none":
                env["PIMC_JAX_XLA_CPU_FLAGS"] = "0"
            elif name != "default":
                flags = name
            result = _run_child(args, f"--xla_force_host_platform_device_count=1 {flags}", [], env)
            times[name].append(result["step_s"])
            seen[name] = result["xla_flags"]
    print(f"config: {args.config}; one device; median step ms per round")
    print(
        "| XLA flags | "
        + " | ".join(f"round {i + 1}" for i in range(args.rounds))
        + " | fastest vs default |"
    )
    print("|---" * (args.rounds + 2) + "|")
    reference = min(times.get("default") or times[sets[0]])
    for name in sets:
        cells = " | ".join(f"{1e3 * t:.1f}" for t in times[name])
        print(f"| `{name}` | {cells} | {min(times[name]) / reference:.2f}x |")
    for name in sets:
        print(f"{name}: the step's process ran with XLA_FLAGS={seen[name]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/pretrain.py")
    parser.add_argument("--devices", default="1,4", help="comma-separated device counts")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], help="key=json value override")
    parser.add_argument("--vs-torch", action="store_true", help="JAX against eager PyTorch")
    parser.add_argument("--layouts", default="default,resnet18", help="with --vs-torch")
    parser.add_argument("--breakdown", action="store_true", help="per-tower times too")
    parser.add_argument("--per-round", type=int, default=2, help="with --vs-torch")
    parser.add_argument("--flag_sets", default="", help="'|'-separated XLA flag sets")
    parser.add_argument("--rounds", type=int, default=2, help="with --flag_sets")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.config, args.set, args.breakdown)
        return
    if args.child:
        print("RESULT", json.dumps(_child(args.config, args.repeats, args.set)))
        return
    if args.vs_torch:
        _vs_torch(args)
        return
    if args.flag_sets:
        _flag_sets(args)
        return
    results = []
    for count in [int(c) for c in args.devices.split(",")]:
        # Only affects the CPU platform; on a GPU host the real devices are used.
        results.append(_run_child(args, f"--xla_force_host_platform_device_count={count}", []))
    print(
        f"config: {args.config}  platform: {results[0]['platform']}  "
        f"global batch: {results[0]['global_batch']}"
    )
    print(f"{'devices':>8} {'step ms':>9} {'pairs/s':>9} {'RP ms/dev':>10} {'RP share':>9}")
    for r in results:
        print(
            f"{r['devices']:>8} {1e3 * r['step_s']:>9.1f} {r['pairs_per_s']:>9.0f} "
            f"{1e3 * r['rp_s_per_device']:>10.2f} {100 * r['rp_share']:>8.1f}%"
        )
    base = results[0]["pairs_per_s"]
    for r in results[1:]:
        print(
            f"pairs/s ratio {r['devices']} vs {results[0]['devices']} device(s): "
            f"{r['pairs_per_s'] / base:.2f}x"
        )


if __name__ == "__main__":
    from pimc_jax import parallel

    parallel.set_xla_cpu_flags()  # before JAX starts its backends
    main()
