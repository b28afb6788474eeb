"""JAX against eager PyTorch on CPU, kernel by kernel: the towers' convolutions and GroupNorms.

    pip install -e .[bench]                            # PyTorch (a CPU build is enough)
    python bench/conv_kernels.py                       # default and resnet18 layouts
    python bench/conv_kernels.py --layouts=default --repeats=3
    python bench/conv_kernels.py --against=nchw          # JAX only: NHWC against NCHW

Where ``bench/train_step.py --vs-torch`` times whole steps, this takes the two towers
apart. Per layout (``default``: the config as it is; ``resnet18``: the overrides of
``bench/train_step.py``, batch 64) it traces the forward pass of both towers of the real
model (:class:`pimc_jax.models.PIMC`, inputs of the shapes the spec gives) and collects
every distinct convolution (batch, height, width, input and output channels, kernel,
stride, padding, as the ``conv_general_dilated`` equations of the jaxpr hold them) and
every GroupNorm input shape, with how often each occurs in one forward pass. Then, for
each of them, in this one process:

* JAX: the jitted ``lax.conv_general_dilated`` (NHWC/HWIO, float32, the model's padding)
  and its jitted ``jax.vjp`` (gradients of input and weights from an upstream gradient;
  of the weights only for a stem, whose input is data); the GroupNorm is the project's
  :class:`pimc_jax.models.GroupNorm`, its backward the jitted pullback of ``jax.vjp``
  (residuals saved by the forward).
* PyTorch: ``torch.nn.functional.conv2d`` / ``torch.nn.GroupNorm`` on channels-last
  tensors (``bench/torch_reference.py``'s layout: an uneven ``"SAME"`` padding is an
  explicit ``F.pad``), forward under ``no_grad`` and ``torch.autograd.grad`` on a kept
  graph, ``--torch-threads`` threads.

After compilation and warm-up, the JAX and PyTorch calls of each kernel alternate, round
after round (``--repeats``), every round going through all the layout's kernels; a sample
is one untimed call, then back-to-back timed calls for about 2 ms (at least one). XLA runs
with the CPU flags the launcher sets (:func:`pimc_jax.parallel.set_xla_cpu_flags`).

It prints one markdown table per layout: per kernel, the towers it occurs in and its count
per forward pass, forward and backward milliseconds per call on each side as
``median / min``, the JAX/PyTorch time ratio of forward + backward at each side's fastest
round (above 1: JAX is slower), and count-weighted forward + backward milliseconds per
side and their difference (what the kernel adds to the gap in one training step), with
totals. On a shared machine the minima are the fair comparison.

``--against=nchw`` needs no PyTorch: the other side is the same JAX convolution in the
NCHW/OIHW layout (input, filter and upstream gradient transposed once, outside the timed
calls), so the table says whether XLA:CPU runs any convolution of the model faster with
the channels first; GroupNorms are left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from train_step import LAYOUTS, _load_config

SAMPLE_S = 0.002  # a timed sample repeats a call for about this long (at least once)
SIDES = ("jax fwd", "torch fwd", "jax bwd", "torch bwd")

Padding = tuple[tuple[int, int], tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Conv:
    """One convolution shape, NHWC input and a ``kernel × kernel`` HWIO filter."""

    batch: int
    height: int
    width: int
    cin: int
    cout: int
    kernel: int
    stride: int
    padding: Padding  # (before, after) for height and width, as in the jaxpr
    stem: bool  # the input is data: the backward computes the weight gradient only

    def label(self) -> str:
        """``conv 3x3/2 16->32 @ 128x12x12 pad (0,1)`` (``[stem]`` for a stem)."""
        (top, bottom), (left, right) = self.padding
        pad = f"({top},{bottom})" if (top, bottom) == (left, right) else str(self.padding)
        return (
            f"conv {self.kernel}x{self.kernel}/{self.stride} {self.cin}->{self.cout} "
            f"@ {self.batch}x{self.height}x{self.width} pad {pad}"
            + (" [stem]" if self.stem else "")
        )


@dataclasses.dataclass(frozen=True)
class Norm:
    """One GroupNorm shape: NHWC input, ``groups`` groups."""

    shape: tuple[int, int, int, int]
    groups: int

    def label(self) -> str:
        """``groupnorm 128x12x12x16 g8``."""
        return f"groupnorm {'x'.join(map(str, self.shape))} g{self.groups}"


Kernel = Conv | Norm


@dataclasses.dataclass
class Usage:
    """Where a kernel occurs in one forward pass of the model."""

    count: int = 0
    towers: list[str] = dataclasses.field(default_factory=list)

    def add(self, tower: str) -> None:
        self.count += 1
        if tower not in self.towers:
            self.towers.append(tower)


def _convs(jaxpr: Any) -> list[Any]:
    """The ``conv_general_dilated`` equations of ``jaxpr`` and its sub-jaxprs, in order."""
    from jax.extend.core import jaxprs_in_params

    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            found.append(eqn)
        for sub in jaxprs_in_params(eqn.params):
            found.extend(_convs(sub))
    return found


def _conv_of(eqn: Any, stem: bool) -> Conv:
    """The :class:`Conv` of a ``conv_general_dilated`` equation (any dimension order)."""
    params = eqn.params
    plain = (
        params["feature_group_count"] == 1
        and params["batch_group_count"] == 1
        and set(params["lhs_dilation"]) == {1}
        and set(params["rhs_dilation"]) == {1}
        and len(set(params["window_strides"])) == 1
    )
    lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    numbers = params["dimension_numbers"]
    n, c, h, w = (lhs[i] for i in numbers.lhs_spec)
    out, cin, kh, kw = (rhs[i] for i in numbers.rhs_spec)
    if not plain or kh != kw or cin != c:
        raise ValueError(f"a convolution this benchmark does not mirror: {eqn}")
    padding = tuple(tuple(int(p) for p in pair) for pair in params["padding"])
    return Conv(n, h, w, c, out, kh, params["window_strides"][0], padding, stem)


def _tower_kernels(model: Any, params: Any, x: Any, tower: str) -> list[Kernel]:
    """The convolutions, then the GroupNorms, of ``tower``'s forward pass on ``x``, in order."""
    import flax.linen as nn
    import jax

    from pimc_jax.models import PIMC, GroupNorm

    norms: list[Norm] = []

    def record(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
        module = context.module
        if isinstance(module, GroupNorm) and context.method_name == "__call__":
            norms.append(Norm(tuple(args[0].shape), module.num_groups))
        return next_fun(*args, **kwargs)

    method = getattr(PIMC, f"encode_{tower}")
    with nn.intercept_methods(record):
        jaxpr = jax.make_jaxpr(lambda p, x: model.apply(p, x, method=method))(params, x)
    convs = [_conv_of(eqn, stem=i == 0) for i, eqn in enumerate(_convs(jaxpr.jaxpr))]
    return [*convs, *norms]


def model_kernels(config: Any) -> dict[Kernel, Usage]:
    """Distinct convolutions and GroupNorms of both towers' forward pass, with their usage.

    Traces :class:`pimc_jax.models.PIMC` (built from the spec a training run builds from
    ``config``) on inputs of the batch size and view shapes of that spec; the first
    convolution of each tower is its stem.
    """
    import jax
    import jax.numpy as jnp

    from pimc_jax.models import PIMC, TOWERS
    from pimc_jax.train import build_pretraining

    spec = build_pretraining(config).spec
    model = PIMC(spec)
    inputs = {
        tower: jax.ShapeDtypeStruct(
            (config.global_batch_size, *spec.view_input_shape(spec.tower_view(tower))),
            jnp.float32,
        )
        for tower in TOWERS
    }
    params = jax.eval_shape(model.init, jax.random.key(0), inputs["rp"], inputs["image"])
    kernels: dict[Kernel, Usage] = {}
    for tower in TOWERS:
        for kernel in _tower_kernels(model, params, inputs[tower], tower):
            kernels.setdefault(kernel, Usage()).add(tower)
    # Convolutions first, each group in order of first occurrence.
    return dict(sorted(kernels.items(), key=lambda item: isinstance(item[0], Norm)))


def _conv_fns(conv: Conv, rng: np.random.Generator) -> dict[str, Callable[[], Any]]:
    """The four timed calls of a convolution, after checking that both sides agree."""
    import jax
    import torch
    import torch.nn.functional as F

    x = rng.standard_normal((conv.batch, conv.height, conv.width, conv.cin), np.float32)
    w = rng.standard_normal((conv.kernel, conv.kernel, conv.cin, conv.cout), np.float32)
    stride = (conv.stride, conv.stride)

    def jconv(x: jax.Array, w: jax.Array) -> jax.Array:
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, w, stride, conv.padding, dimension_numbers=dims)

    if conv.stem:
        pullback = lambda x, w, g: jax.vjp(lambda w: jconv(x, w), w)[1](g)
    else:
        pullback = lambda x, w, g: jax.vjp(jconv, x, w)[1](g)
    jfwd, jbwd = jax.jit(jconv), jax.jit(pullback)
    jx, jw = jax.device_put(x), jax.device_put(w)
    y = np.asarray(jfwd(jx, jw))
    g = rng.standard_normal(y.shape, np.float32)
    jg = jax.device_put(g)

    last = torch.channels_last
    tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=last)
    tw = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(memory_format=last)
    tx.requires_grad_(not conv.stem)
    tw.requires_grad_(True)
    (top, bottom), (left, right) = conv.padding

    def tconv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if top == bottom and left == right:
            return F.conv2d(x, w, None, stride, padding=(top, left))
        return F.conv2d(F.pad(x, (left, right, top, bottom)), w, None, stride)

    ty = tconv(tx, tw)
    _check(y, ty.detach().permute(0, 2, 3, 1).numpy(), conv.label())
    tg = torch.from_numpy(g).permute(0, 3, 1, 2).contiguous(memory_format=last)
    wrt = (tw,) if conv.stem else (tx, tw)

    def torch_fwd() -> None:
        with torch.no_grad():
            tconv(tx, tw)

    return {
        "jax fwd": lambda: jax.block_until_ready(jfwd(jx, jw)),
        "torch fwd": torch_fwd,
        "jax bwd": lambda: jax.block_until_ready(jbwd(jx, jw, jg)),
        "torch bwd": lambda: torch.autograd.grad(ty, wrt, tg, retain_graph=True),
    }


def _nchw_conv_fns(conv: Conv, rng: np.random.Generator) -> dict[str, Callable[[], Any]]:
    """The four timed calls of a convolution: JAX in NHWC/HWIO (the model's layout) on the
    ``jax`` side, JAX in NCHW/OIHW on the other, after checking that both agree."""
    import jax

    x = rng.standard_normal((conv.batch, conv.height, conv.width, conv.cin), np.float32)
    w = rng.standard_normal((conv.kernel, conv.kernel, conv.cin, conv.cout), np.float32)
    stride = (conv.stride, conv.stride)
    fns = {}
    for side, dims, to in (
        ("jax", ("NHWC", "HWIO", "NHWC"), ((0, 1, 2, 3), (0, 1, 2, 3))),
        ("torch", ("NCHW", "OIHW", "NCHW"), ((0, 3, 1, 2), (3, 2, 0, 1))),
    ):
        conv_fn = lambda x, w, dims=dims: jax.lax.conv_general_dilated(
            x, w, stride, conv.padding, dimension_numbers=dims
        )
        if conv.stem:
            pullback = lambda x, w, g, f=conv_fn: jax.vjp(lambda w: f(x, w), w)[1](g)
        else:
            pullback = lambda x, w, g, f=conv_fn: jax.vjp(f, x, w)[1](g)
        fwd, bwd = jax.jit(conv_fn), jax.jit(pullback)
        jx = jax.device_put(np.ascontiguousarray(x.transpose(to[0])))
        jw = jax.device_put(np.ascontiguousarray(w.transpose(to[1])))
        y = np.asarray(fwd(jx, jw))
        g = jax.device_put(np.ones_like(y))
        fns[side] = (fwd, bwd, jx, jw, g, y.transpose(np.argsort(to[0])))
    _check(fns["jax"][5], fns["torch"][5], conv.label())
    out = {}
    for side in ("jax", "torch"):
        fwd, bwd, jx, jw, g, _ = fns[side]
        out[f"{side} fwd"] = lambda f=fwd, a=jx, b=jw: jax.block_until_ready(f(a, b))
        out[f"{side} bwd"] = lambda f=bwd, a=jx, b=jw, c=g: jax.block_until_ready(f(a, b, c))
    return {name: out[name] for name in SIDES}


def _norm_fns(norm: Norm, rng: np.random.Generator) -> dict[str, Callable[[], Any]]:
    """The four timed calls of a GroupNorm, after checking that both sides agree."""
    import jax
    import torch

    from pimc_jax.models import GroupNorm

    x = rng.standard_normal(norm.shape, np.float32)
    channels = norm.shape[-1]
    module = GroupNorm(num_groups=norm.groups)
    jx = jax.device_put(x)
    params = module.init(jax.random.key(0), jx)
    jfwd = jax.jit(module.apply)
    y, pullback = jax.jit(lambda p, x: jax.vjp(module.apply, p, x))(params, jx)
    jbwd = jax.jit(lambda pullback, g: pullback(g))
    g = rng.standard_normal(y.shape, np.float32)
    jg = jax.device_put(g)

    last = torch.channels_last
    tnorm = torch.nn.GroupNorm(norm.groups, channels, eps=module.epsilon)
    tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=last)
    tx.requires_grad_(True)
    ty = tnorm(tx)
    _check(np.asarray(y), ty.detach().permute(0, 2, 3, 1).numpy(), norm.label())
    tg = torch.from_numpy(g).permute(0, 3, 1, 2).contiguous(memory_format=last)
    wrt = (tx, tnorm.weight, tnorm.bias)

    def torch_fwd() -> None:
        with torch.no_grad():
            tnorm(tx)

    return {
        "jax fwd": lambda: jax.block_until_ready(jfwd(params, jx)),
        "torch fwd": torch_fwd,
        "jax bwd": lambda: jax.block_until_ready(jbwd(pullback, jg)),
        "torch bwd": lambda: torch.autograd.grad(ty, wrt, tg, retain_graph=True),
    }


def _check(jax_out: np.ndarray, torch_out: np.ndarray, label: str) -> None:
    """Both frameworks compute the same thing (else the timing compares different work)."""
    if jax_out.shape != torch_out.shape:
        raise AssertionError(f"{label}: JAX {jax_out.shape} vs torch {torch_out.shape}")
    error = float(np.max(np.abs(jax_out - torch_out)) / (np.max(np.abs(jax_out)) + 1e-12))
    if error > 1e-4:
        raise AssertionError(f"{label}: JAX and torch differ (relative error {error:.1e})")


def _sample(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call of ``fn()`` over ``calls`` back-to-back calls, after an untimed one
    (which wakes the framework's thread pool, as the kernel before it does in a step)."""
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def time_alternating(
    kernels: list[dict[str, Callable[[], Any]]], repeats: int
) -> list[dict[str, list[float]]]:
    """Per-call seconds of each function of each kernel, ``repeats`` samples each.

    Two untimed calls each first (compilation, warm-up). Each round then samples every
    kernel once, its functions in the order given on even rounds and reversed on odd ones,
    so that JAX and PyTorch alternate, neither always goes first, and each kernel's samples
    are spread over the whole run (the other load of a shared machine comes and goes).
    """
    calls = []
    for fns in kernels:
        for fn in fns.values():
            fn()
        calls.append({name: max(1, round(SAMPLE_S / _sample(fn, 1))) for name, fn in fns.items()})
    times: list[dict[str, list[float]]] = [{name: [] for name in fns} for fns in kernels]
    for round_ in range(repeats):
        for fns, counts, kernel_times in zip(kernels, calls, times, strict=True):
            names = list(fns) if round_ % 2 == 0 else list(fns)[::-1]
            for name in names:
                kernel_times[name].append(_sample(fns[name], counts[name]))
        print(f"  round {round_ + 1}/{repeats}", file=sys.stderr, flush=True)
    return times


@dataclasses.dataclass
class Row:
    """One table row: a kernel, its usage and its per-call times (s) per side."""

    kernel: Kernel
    usage: Usage
    times: dict[str, list[float]]

    def fastest(self, framework: str) -> float:
        """Forward + backward seconds per call at the fastest samples of ``framework``."""
        return min(self.times[f"{framework} fwd"]) + min(self.times[f"{framework} bwd"])

    def weighted(self, framework: str) -> float:
        """:meth:`fastest` times the count in one forward pass."""
        return self.usage.count * self.fastest(framework)


def _ms(values: list[float]) -> str:
    return f"{1e3 * statistics.median(values):.3f} / {1e3 * min(values):.3f}"


def table(rows: list[Row]) -> str:
    """The markdown table of one layout, with totals for convolutions, norms and both."""
    header = [
        "kernel",
        "towers",
        "count",
        "JAX fwd ms",
        "torch fwd ms",
        "JAX bwd ms",
        "torch bwd ms",
        "JAX/torch",
        "JAX ms x count",
        "torch ms x count",
        "gap ms x count",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        jax_s, torch_s = row.weighted("jax"), row.weighted("torch")
        cells = [
            row.kernel.label(),
            "+".join(row.usage.towers),
            str(row.usage.count),
            *(_ms(row.times[side]) for side in SIDES),
            f"{row.fastest('jax') / row.fastest('torch'):.2f}",
            f"{1e3 * jax_s:.2f}",
            f"{1e3 * torch_s:.2f}",
            f"{1e3 * (jax_s - torch_s):+.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    groups = {
        "all convolutions": [r for r in rows if isinstance(r.kernel, Conv)],
        "all GroupNorms": [r for r in rows if isinstance(r.kernel, Norm)],
        "total": rows,
    }
    for name, group in groups.items():
        if not group:
            continue
        jax_s = sum(r.weighted("jax") for r in group)
        torch_s = sum(r.weighted("torch") for r in group)
        count = sum(r.usage.count for r in group)
        cells = [f"**{name}**", "", str(count), "", "", "", "", f"{jax_s / torch_s:.2f}"]
        cells += [f"{1e3 * jax_s:.2f}", f"{1e3 * torch_s:.2f}", f"{1e3 * (jax_s - torch_s):+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_layout(config: Any, repeats: int, seed: int = 0, against: str = "torch") -> list[Row]:
    """Traces the layout's model and times each of its kernels on both sides (``against``
    ``"nchw"``: the convolutions only, the other side JAX in NCHW)."""
    rng = np.random.default_rng(seed)
    usages = model_kernels(config)
    if against == "nchw":
        usages = {k: u for k, u in usages.items() if isinstance(k, Conv)}
        fns = [_nchw_conv_fns(k, rng) for k in usages]
    else:
        fns = [(_conv_fns if isinstance(k, Conv) else _norm_fns)(k, rng) for k in usages]
    times = time_alternating(fns, repeats)
    return [Row(k, u, t) for (k, u), t in zip(usages.items(), times, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/pretrain.py")
    parser.add_argument("--layouts", default="default,resnet18", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per kernel")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="key=json value override")
    parser.add_argument("--against", choices=("torch", "nchw"), default="torch")
    args = parser.parse_args()
    import jax

    other = "JAX in NCHW/OIHW (columns named torch)"
    if args.against == "torch":
        try:
            import torch
        except ImportError:
            sys.exit("bench/conv_kernels.py needs PyTorch: pip install -e .[bench]")
        torch.set_num_threads(args.torch_threads)
        other = f"torch {torch.__version__} with {torch.get_num_threads()} threads"
    print(
        f"config: {args.config}  XLA_FLAGS: {os.environ.get('XLA_FLAGS') or '(none)'}\n"
        f"jax {jax.__version__} on {jax.devices()[0].platform} (NHWC) against {other}  "
        f"rounds: {args.repeats}"
    )
    for layout in args.layouts.split(","):
        if layout not in LAYOUTS:
            sys.exit(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
        # The layout's overrides go first, so that --set can change them.
        pre = [f"{key}={json.dumps(value)}" for key, value in LAYOUTS[layout].items()]
        config = _load_config(args.config, pre + args.set)
        print(f"\nlayout {layout}: batch {config.global_batch_size}", file=sys.stderr)
        rows = run_layout(config, args.repeats, against=args.against)
        print(
            f"\n### layout: {layout}  (batch {config.global_batch_size}; ms per call as "
            "median / min; ratio and weighted columns from the minima, fwd + bwd)\n"
        )
        print(table(rows), flush=True)


if __name__ == "__main__":
    from pimc_jax import parallel

    parallel.set_xla_cpu_flags()  # before JAX starts its backends
    main()
