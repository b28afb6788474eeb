"""The PIMC two-tower model and its training step in eager PyTorch, as a timing reference.

``bench/train_step.py --vs-torch`` times this against the JAX step on the same inputs.
The model mirrors :class:`pimc_jax.models.PIMC` layer for layer (ResNet towers with
GroupNorm, the zero-initialised last norm scale of each block, projection heads with L2
normalisation, the clipped learnable temperature), and :func:`load_flax_variables`
copies a JAX model's parameters into it, so the two compute the same loss and gradients
(checked in ``tests/test_bench.py``). Convolutions pad like Flax's ``"SAME"``: for a
stride-2 3×3 convolution on an even input that is one row/column after, none before.

The step is what the JAX step does after the recurrence plots are made: both towers
forward, the symmetric InfoNCE, backward, global-norm clipping and AdamW (no weight
decay on rank < 2 parameters). PyTorch is an optional dependency (the ``bench`` extra).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pimc_jax.models import EncoderSpec, ModelSpec, _groups


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of Flax/XLA ``"SAME"`` along one axis of length ``size``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Module):
    """``k × k`` convolution with Flax's ``"SAME"`` padding; ``(N, C, H, W)`` float32."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=0, bias=bias)
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_padding(x.shape[2], self.kernel, self.stride)
        left, right = _same_padding(x.shape[3], self.kernel, self.stride)
        if top == bottom and left == right:
            return F.conv2d(x, self.conv.weight, self.conv.bias, self.stride, padding=(top, left))
        return self.conv(F.pad(x, (left, right, top, bottom)))


def _norm(channels: int, max_groups: int, zero: bool = False) -> nn.Module:
    if max_groups == 0:
        return nn.Identity()
    norm = nn.GroupNorm(_groups(channels, max_groups), channels, eps=1e-6)
    if zero:
        nn.init.zeros_(norm.weight)
    return norm


class ResidualBlock(nn.Module):
    """:class:`pimc_jax.models.ResidualBlock` (``norm_groups=0`` is not mirrored)."""

    def __init__(self, cin: int, width: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = SameConv(cin, width, 3, stride, bias=False)
        self.norm1 = _norm(width, groups)
        self.conv2 = SameConv(width, width, 3, 1, bias=False)
        self.norm2 = _norm(width, groups, zero=True)
        self.project = cin != width or stride != 1
        if self.project:
            self.proj_conv = SameConv(cin, width, 1, stride, bias=False)
            self.proj_norm = _norm(width, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        residual = self.proj_norm(self.proj_conv(x)) if self.project else x
        return F.relu(residual + y)


class ResNetEncoder(nn.Module):
    """:class:`pimc_jax.models.ResNetEncoder`: ``(N, C, H, W)`` → ``(N, F)``."""

    def __init__(self, spec: EncoderSpec, cin: int) -> None:
        super().__init__()
        if spec.norm_groups == 0:
            raise ValueError("the PyTorch reference mirrors GroupNorm towers only")
        self.stem = SameConv(cin, spec.stem_width, spec.stem_kernel, spec.stem_stride, False)
        self.stem_norm = _norm(spec.stem_width, spec.norm_groups)
        self.stem_pool = spec.stem_pool
        self.input_means = spec.input_means
        blocks, channels = [], spec.stem_width
        for stage, (count, width) in enumerate(zip(spec.stage_sizes, spec.widths, strict=True)):
            for block in range(count):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(ResidualBlock(channels, width, stride, spec.norm_groups))
                channels = width
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = x.mean(dim=(2, 3)) if self.input_means else None
        x = F.relu(self.stem_norm(self.stem(x)))
        if self.stem_pool:
            top, bottom = _same_padding(x.shape[2], 3, 2)
            left, right = _same_padding(x.shape[3], 3, 2)
            x = F.max_pool2d(F.pad(x, (left, right, top, bottom), value=-float("inf")), 3, 2)
        pooled = self.blocks(x).mean(dim=(2, 3))
        return pooled if means is None else torch.cat([pooled, means], dim=1)


class ProjectionHead(nn.Module):
    """:class:`pimc_jax.models.ProjectionHead`: ``(N, F)`` → ``(N, D)`` unit rows."""

    def __init__(self, features: int, hidden: tuple[int, ...], output: int) -> None:
        super().__init__()
        dims = (features, *hidden)
        self.hidden = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.out = nn.Linear(dims[-1], output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = F.relu(layer(x))
        x = self.out(x)
        return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + 1e-12)


class TwoTower(nn.Module):
    """:class:`pimc_jax.models.PIMC`: plots and crops (NCHW) → embeddings and τ."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.rp_encoder = ResNetEncoder(spec.rp_encoder, spec.rp_input_channels)
        self.image_encoder = ResNetEncoder(spec.image_encoder, len(spec.image_bands))
        head = (tuple(spec.head_hidden_dims), spec.embedding_dim)
        self.rp_head = ProjectionHead(spec.feature_dim("rp"), *head)
        self.image_head = ProjectionHead(spec.feature_dim("image"), *head)
        init = float(np.log(1.0 / spec.temperature))
        self.logit_scale = nn.Parameter(torch.tensor(init), spec.learnable_temperature)

    def temperature(self) -> torch.Tensor:
        return 1.0 / torch.clamp(torch.exp(self.logit_scale), max=self.spec.max_logit_scale)

    def forward(
        self, plots: torch.Tensor, crops: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_rp = self.rp_head(self.rp_encoder(plots))
        z_image = self.image_head(self.image_encoder(crops))
        return z_rp, z_image, self.temperature()


def symmetric_infonce(z_a: torch.Tensor, z_b: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """:func:`pimc_jax.loss.symmetric_infonce` on one device: scalar float32 loss."""
    logits = z_a @ z_b.T / tau
    targets = torch.arange(z_a.shape[0])
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def _flax_modules(model: TwoTower) -> dict[str, tuple[str, ...]]:
    """Flax parameter path (as a ``/``-joined string) → this model's module path."""
    names: dict[str, tuple[str, ...]] = {}
    for tower in ("rp", "image"):
        encoder: ResNetEncoder = getattr(model, f"{tower}_encoder")
        prefix = f"{tower}_encoder"
        names[f"{prefix}/Conv_0"] = (prefix, "stem", "conv")
        names[f"{prefix}/GroupNorm_0"] = (prefix, "stem_norm")
        for i, block in enumerate(encoder.blocks):
            base = f"{prefix}/ResidualBlock_{i}"
            layers = ["conv1", "norm1", "conv2", "norm2"]
            if block.project:
                layers += ["proj_conv", "proj_norm"]
            for layer in layers:
                path = (prefix, "blocks", str(i), layer)
                names[f"{base}/{layer}"] = path + (("conv",) if "conv" in layer else ())
        head: ProjectionHead = getattr(model, f"{tower}_head")
        for i in range(len(head.hidden)):
            names[f"{tower}_head/Dense_{i}"] = (f"{tower}_head", "hidden", str(i))
        names[f"{tower}_head/Dense_{len(head.hidden)}"] = (f"{tower}_head", "out")
    return names


def load_flax_variables(model: TwoTower, variables: Mapping[str, Any]) -> None:
    """Copies a :class:`pimc_jax.models.PIMC`'s Flax ``variables`` into ``model`` in place.

    Conv kernels ``(kh, kw, in, out)`` become ``(out, in, kh, kw)``, dense kernels
    ``(in, out)`` become ``(out, in)``; GroupNorm ``scale``/``bias`` map to
    ``weight``/``bias``.
    """
    params = variables["params"]
    modules = _flax_modules(model)
    with torch.no_grad():
        for flax_path, torch_path in modules.items():
            node: Any = params
            for key in flax_path.split("/"):
                node = node[key]
            module: Any = model
            for key in torch_path:
                module = module[int(key)] if key.isdigit() else getattr(module, key)
            for name, value in node.items():
                value = np.array(value, np.float32)
                if name == "kernel":
                    value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
                    module.weight.copy_(torch.from_numpy(np.ascontiguousarray(value)))
                elif name == "scale":
                    module.weight.copy_(torch.from_numpy(value))
                else:
                    module.bias.copy_(torch.from_numpy(value))
        if "logit_scale" in params:
            model.logit_scale.copy_(torch.tensor(float(params["logit_scale"])))


@dataclasses.dataclass
class TorchStep:
    """``step(plots, crops) -> loss``: one eager forward/backward/AdamW update.

    ``plots`` ``(N, S, S, K)`` and ``crops`` ``(N, k, k, C)`` are float32 NumPy (NHWC, as
    the JAX model takes them: plots from :func:`pimc_jax.preprocessing.series_to_plots`,
    crops from :func:`pimc_jax.preprocessing.normalize_crops`); they are converted to
    ``(N, C, H, W)`` tensors once by :meth:`inputs`.
    """

    model: TwoTower
    optimizer: torch.optim.Optimizer
    grad_clip_norm: float
    channels_last: bool = True

    def inputs(self, plots: np.ndarray, crops: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """NHWC float32 arrays → NCHW tensors (channels-last in memory if so configured)."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        to = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
        return to(plots).contiguous(memory_format=fmt), to(crops).contiguous(memory_format=fmt)

    def __call__(self, plots: torch.Tensor, crops: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = symmetric_infonce(*self.model(plots, crops))
        loss.backward()
        if self.grad_clip_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        self.optimizer.step()
        return float(loss)


def make_step(
    spec: ModelSpec,
    *,
    learning_rate: float = 3e-3,
    weight_decay: float = 1e-4,
    grad_clip_norm: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    variables: Mapping[str, Any] | None = None,
    channels_last: bool = True,
) -> TorchStep:
    """A :class:`TorchStep` for ``spec`` (parameters from Flax ``variables`` if given).

    AdamW at a constant ``learning_rate`` (a schedule changes no timing), decay on
    parameters of rank ≥ 2 only, as :func:`pimc_jax.optim.adamw`.
    """
    model = TwoTower(spec)
    if variables is not None:
        load_flax_variables(model, variables)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2 and p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=learning_rate,
        betas=betas,
        eps=1e-8,
    )
    return TorchStep(model, optimizer, grad_clip_norm, channels_last)


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> list[float]:
    """Wall times (s) of ``repeats`` calls of ``fn()`` after ``warmup`` untimed ones."""
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
