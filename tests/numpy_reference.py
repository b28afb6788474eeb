"""An independent NumPy (and pyts) implementation of the PIMC pipeline, written from the
definitions in the system spec rather than from the package's code, for tests to compare
against: vegetation indices, resampled series and their plots, the ResNet towers with
GroupNorm, the projection heads and the symmetric InfoNCE.

Everything runs in float64. Parameters are read from the Flax variable tree by name
(``Conv_0``, ``GroupNorm_0``, ``ResidualBlock_<i>`` with ``conv1``/``norm1``/``conv2``/
``norm2``/``proj_conv``/``proj_norm``, ``Dense_<i>``): the naming is the only thing shared
with the code under test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pyts.image import RecurrencePlot

# ---------------------------------------------------------------------------------------
# Indices (spec §1): reflectance in [0, 1], bands looked up by name.


def _band(bands: np.ndarray, names: Sequence[str], name: str) -> np.ndarray:
    return bands[..., list(names).index(name)].astype(np.float64)


def index_series(bands: np.ndarray, names: Sequence[str], index: str) -> np.ndarray:
    """One spectral index of ``(..., C)`` reflectance, float64, by its textbook formula."""
    nir, red = _band(bands, names, "B8"), _band(bands, names, "B4")
    if index == "ndvi":
        return (nir - red) / (nir + red)
    if index == "evi":
        blue = _band(bands, names, "B2")
        return 2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1)
    if index == "savi":
        return 1.5 * (nir - red) / (nir + red + 0.5)
    pairs = {
        "ndmi": ("B8", "B11"),
        "nbr": ("B8", "B12"),
        "ndre": ("B8", "B5"),
        "ndwi": ("B3", "B8"),
    }
    a, b = (_band(bands, names, n) for n in pairs[index])
    return (a - b) / (a + b)


# ---------------------------------------------------------------------------------------
# Plots (spec §2): series resampled onto S regular steps over the dates, then per index
# the distance plot (pyts), and the difference and level plots.


def resampled_indices(
    bands: np.ndarray,
    dates: np.ndarray,
    names: Sequence[str],
    indices: Sequence[str],
    size: int,
    span: str,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """One pixel's ``(T, C)`` bands on ``(T,)`` increasing days → ``(size, K)`` index series
    on ``size`` regular steps, linearly interpolated between the valid dates (``mask`` and
    finite indices) and held constant beyond the first and last of them.

    The steps run from the first to the last valid date (``span="valid"``) or from the
    first to the last acquisition, valid or not (``span="acquisitions"``)."""
    dates = np.asarray(dates, np.float64)
    mask = np.ones(dates.shape, bool) if mask is None else np.asarray(mask, bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.stack([index_series(bands, names, k) for k in indices], axis=-1)
    valid = mask & np.all(np.isfinite(values), axis=-1)
    ends = dates[valid] if span == "valid" else dates[mask]
    steps = ends[0] + (ends[-1] - ends[0]) * np.arange(size) / (size - 1)
    return np.stack(
        [np.interp(steps, dates[valid], values[valid, k]) for k in range(len(indices))], axis=-1
    )


def plots(series: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """``(S, K)`` series → ``(S, S, K·P)`` plots, channel ``p·K + k`` kind ``kinds[p]``."""
    out = []
    for kind in kinds:
        for k in range(series.shape[1]):
            x = series[:, k]
            if kind == "distance":
                out.append(RecurrencePlot().fit_transform(x[None])[0])
            elif kind == "difference":
                out.append(x[None, :] - x[:, None])
            else:
                out.append(0.5 * (x[:, None] + x[None, :]))
    return np.stack(out, axis=-1)


def pixel_plots(bands, dates, names, spec, mask=None) -> np.ndarray:
    """The plot-tower input of one pixel for a :class:`~pimc_jax.models.ModelSpec` with
    unthresholded, unnormalised plots and no embedding (``(S, S, K·P)``)."""
    assert spec.rp_dimension == 1 and spec.rp_threshold is None and not spec.rp_normalize
    series = resampled_indices(bands, dates, names, spec.indices, spec.rp_size, spec.rp_span, mask)
    return plots(series, spec.rp_channels)


# ---------------------------------------------------------------------------------------
# Towers (spec §4).


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """XLA's "SAME": output ceil(size / stride), the extra padding after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv(x: np.ndarray, kernel: np.ndarray, stride: int = 1, bias=None) -> np.ndarray:
    """``(N, H, W, C) * (k, k, C, O)`` cross-correlation with "SAME" zero padding."""
    k = kernel.shape[0]
    (top, bottom), (left, right) = (_same_pads(x.shape[i], k, stride) for i in (1, 2))
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    h, w = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    out = np.zeros((x.shape[0], h, w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            window = padded[:, i : i + stride * h : stride, j : j + stride * w : stride]
            out += np.einsum("nhwc,co->nhwo", window, kernel[i, j])
    return out if bias is None else out + bias


def max_pool(x: np.ndarray, window: int = 3, stride: int = 2) -> np.ndarray:
    (top, bottom), (left, right) = (_same_pads(x.shape[i], window, stride) for i in (1, 2))
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    h, w = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    out = np.full((x.shape[0], h, w, x.shape[3]), -np.inf)
    for i in range(window):
        for j in range(window):
            out = np.maximum(
                out, padded[:, i : i + stride * h : stride, j : j + stride * w : stride]
            )
    return out


def num_groups(channels: int, max_groups: int) -> int:
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


def group_norm(x: np.ndarray, params: Mapping[str, Any], max_groups: int, eps=1e-6) -> np.ndarray:
    """Each sample's channels in groups, standardised over space and the group, then
    scaled and shifted per channel."""
    n, h, w, c = x.shape
    g = num_groups(c, max_groups)
    grouped = x.reshape(n, h, w, g, c // g)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    var = grouped.var(axis=(1, 2, 4), keepdims=True)
    normed = ((grouped - mean) / np.sqrt(var + eps)).reshape(n, h, w, c)
    return normed * params["scale"] + params["bias"]


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def resnet(variables: Mapping[str, Any], encoder, x: np.ndarray) -> np.ndarray:
    """A ResNet tower (:class:`~pimc_jax.models.EncoderSpec` ``encoder``) on ``(N, H, W, C)``
    → ``(N, F)`` pooled features (plus the input channels' means with ``input_means``)."""
    p = _np(variables)
    x = np.asarray(x, np.float64)
    plain = encoder.norm_groups == 0
    means = x.mean(axis=(1, 2))
    y = conv(x, p["Conv_0"]["kernel"], encoder.stem_stride, p["Conv_0"].get("bias"))
    if not plain:
        y = group_norm(y, p["GroupNorm_0"], encoder.norm_groups)
    y = relu(y)
    if encoder.stem_pool:
        y = max_pool(y)
    block = 0
    for stage, (blocks, width) in enumerate(zip(encoder.stage_sizes, encoder.widths, strict=True)):
        for b in range(blocks):
            q = p[f"ResidualBlock_{block}"]
            stride = 2 if stage > 0 and b == 0 else 1

            def norm(name, z, width=width, q=q):
                if plain:
                    return z * q[name] if name == "norm2" else z
                return group_norm(z, q[name], encoder.norm_groups)

            h = relu(norm("norm1", conv(y, q["conv1"]["kernel"], stride, q["conv1"].get("bias"))))
            h = norm("norm2", conv(h, q["conv2"]["kernel"], 1, q["conv2"].get("bias")))
            shortcut = y
            if "proj_conv" in q:
                proj = q["proj_conv"]
                shortcut = norm("proj_norm", conv(y, proj["kernel"], stride, proj.get("bias")))
            y = relu(shortcut + h)
            block += 1
    pooled = y.mean(axis=(1, 2))
    return np.concatenate([pooled, means], axis=-1) if encoder.input_means else pooled


def head(variables: Mapping[str, Any], features: np.ndarray) -> np.ndarray:
    """MLP with ReLU between its ``Dense_<i>`` layers, output L2-normalised."""
    p = _np(variables)
    layers = sorted(p, key=lambda name: int(name.split("_")[1]))
    x = np.asarray(features, np.float64)
    for i, name in enumerate(layers):
        x = x @ p[name]["kernel"] + p[name]["bias"]
        if i < len(layers) - 1:
            x = relu(x)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def model(variables: Mapping[str, Any], spec, rp: np.ndarray, image: np.ndarray) -> dict:
    """Both towers and τ: ``z_rp``, ``z_image``, ``temperature`` (clipped 1/τ)."""
    p = variables["params"]
    z_rp = head(p["rp_head"], resnet(p["rp_encoder"], spec.rp_encoder, rp))
    z_image = head(p["image_head"], resnet(p["image_encoder"], spec.image_encoder, image))
    if spec.learnable_temperature:
        temperature = 1.0 / min(np.exp(float(p["logit_scale"])), spec.max_logit_scale)
    else:
        temperature = spec.temperature
    return {"z_rp": z_rp, "z_image": z_image, "temperature": temperature}


def standardized_crops(image: np.ndarray, mean, std) -> np.ndarray:
    out = (np.asarray(image, np.float64) - np.asarray(mean)) / np.asarray(std)
    return np.where(np.isfinite(out), out, 0.0)


# ---------------------------------------------------------------------------------------
# Loss (spec §4).


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def symmetric_infonce(z_a: np.ndarray, z_b: np.ndarray, temperature: float) -> float:
    """½ [CE(z_a z_bᵀ/τ, diag) + CE(z_b z_aᵀ/τ, diag)]."""
    logits = np.asarray(z_a, np.float64) @ np.asarray(z_b, np.float64).T / temperature
    a2b = -np.mean(np.diag(_log_softmax(logits)))
    b2a = -np.mean(np.diag(_log_softmax(logits.T)))
    return 0.5 * (a2b + b2a)


def _np(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _np(v) for k, v in tree.items()}
    return np.asarray(tree, np.float64)
