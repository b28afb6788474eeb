"""Checks of a pre-training config before any work: counts, sizes, numeric ranges, memory.

Every check raises one ``ValueError`` line naming the key, its value and what it must be
(``launch.py`` prints it as one ``FATAL`` line).
"""

from __future__ import annotations

import math
import os
from typing import Any

import ml_collections
import numpy as np

from pimc_jax.compat import LEGACY_SPEC_FIELDS
from pimc_jax.data.radar import check_s1_setting
from pimc_jax.data.views import S1_VIEWS, check_views

# (config key, smallest allowed value) of the integer keys a run divides or counts by.
_MIN_INT_KEYS: tuple[tuple[str, int], ...] = (
    ("total_steps", 1),
    ("global_batch_size", 1),
    ("keep_checkpoints", 1),
    ("checkpoint_every_steps", 1),
    ("log_every_steps", 1),
    ("seed", 0),
    ("data.max_dates", 1),
    ("data.crop_size", 1),
    ("data.pixels_per_patch", 1),
    ("data.num_threads", 1),
    ("data.prefetch", 1),
    ("model.rp_size", 0),  # 0 = from the data (pimc_jax.models.auto_rp_size)
    ("model.rp_dimension", 1),
    ("model.rp_time_delay", 1),
    ("model.embedding_dim", 1),
    ("optimizer.warmup_steps", 0),
)

# (config key, lowest, highest, lowest allowed itself, highest allowed itself) of the real
# keys with a meaning: every one must also be finite.
_REAL_RANGES: tuple[tuple[str, float, float, bool, bool], ...] = (
    ("optimizer.learning_rate", 0.0, math.inf, False, False),
    ("optimizer.end_factor", 0.0, math.inf, True, False),
    ("optimizer.weight_decay", 0.0, math.inf, True, False),
    ("optimizer.grad_clip_norm", 0.0, math.inf, True, False),
    ("optimizer.b1", 0.0, 1.0, True, False),
    ("optimizer.b2", 0.0, 1.0, True, False),
    ("model.temperature", 0.0, math.inf, False, False),
)

# Share of this machine's memory one host batch (with its prefetched copies) may take.
_MEMORY_SHARE = 0.5


def config_views(config: ml_collections.ConfigDict) -> tuple[str, str]:
    """The checked ``config.model.views`` (a config without the key: the paper's pair)."""
    return check_views(config.model.get("views", LEGACY_SPEC_FIELDS["views"]), "config.model.views")


def _config_value(config: ml_collections.ConfigDict, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = value[part]
    return value


def _check_real(config: ml_collections.ConfigDict) -> None:
    """Signs, ranges and finiteness of :data:`_REAL_RANGES` (``None`` allowed for
    ``grad_clip_norm``: no clipping)."""
    for key, low, high, low_ok, high_ok in _REAL_RANGES:
        try:
            value = _config_value(config, key)
        except (KeyError, AttributeError):
            continue
        if value is None and key == "optimizer.grad_clip_norm":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"config.{key} must be a number, got {value!r}")
        value = float(value)
        above = value > low or (low_ok and value == low)
        below = value < high or (high_ok and value == high)
        if not (math.isfinite(value) and above and below):
            left, right = ("[" if low_ok else "("), ("]" if high_ok else ")")
            raise ValueError(
                f"config.{key} must be finite and in {left}{low:g}, {high:g}{right}, got {value!r}"
            )


def _host_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_batch_memory(config: ml_collections.ConfigDict) -> None:
    """Refuses a global batch whose host arrays alone cannot fit in this machine's memory.

    A rough lower bound per pair: the float32 series (``max_dates`` × (13 bands + date +
    mask)) and one float32 crop per view (``crop_size``² × its bands), times the prefetched
    batches plus the one in use.
    """
    memory = _host_memory_bytes()
    if not memory:
        return
    data = config.data
    bands = data.get("image_bands", ())
    crop_channels = len(bands) if isinstance(bands, (tuple, list)) and bands else 13
    per_pair = 4 * (data.max_dates * 15 + 2 * data.crop_size**2 * crop_channels)
    batches = data.get("prefetch", 1) + 1
    need = config.global_batch_size * per_pair * batches
    if need > _MEMORY_SHARE * memory:
        largest = max(2, int(_MEMORY_SHARE * memory // (per_pair * batches)))
        raise ValueError(
            f"config.global_batch_size={config.global_batch_size} needs about "
            f"{need / 2**30:.3g} GiB of host memory for its batches alone, more than this "
            f"machine's {memory / 2**30:.3g} GiB allow; use at most about {largest}"
        )


def validate_pretrain_config(config: ml_collections.ConfigDict) -> None:
    """Checks counts, sizes, numeric ranges, divisibility and memory before any work.

    Raises:
      ValueError: one line naming the offending config key and its value.
    """
    for key, minimum in _MIN_INT_KEYS:
        try:
            value = _config_value(config, key)
        except (KeyError, AttributeError):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"config.{key} must be an integer, got {value!r}")
        if value < minimum:
            raise ValueError(f"config.{key} must be >= {minimum}, got {value}")
    if config.global_batch_size < 2:
        raise ValueError(
            f"config.global_batch_size must be >= 2 (the contrastive loss needs other pairs "
            f"as negatives), got {config.global_batch_size}"
        )
    if config.data.max_dates < 2:
        raise ValueError(
            f"config.data.max_dates must be >= 2 (a time series needs two dates), got "
            f"{config.data.max_dates}"
        )
    _check_real(config)
    model = config.model
    plot_size = model.rp_size - (model.rp_dimension - 1) * model.rp_time_delay
    if model.rp_size < 0 or model.rp_size == 1:
        raise ValueError(
            f"config.model.rp_size must be 0 (chosen from the data's dates) or >= 2, got "
            f"{model.rp_size}"
        )
    if model.rp_size and plot_size < 2:
        raise ValueError(
            f"config.model.rp_size={model.rp_size} leaves a {plot_size}-pixel plot after the "
            f"time-delay embedding (rp_dimension={model.rp_dimension}, "
            f"rp_time_delay={model.rp_time_delay}); it must leave at least 2"
        )
    data = config.data
    views = config_views(config)
    s1_views = [view for view in views if view in S1_VIEWS]
    if s1_views and check_s1_setting(data.get("s1", "none")) is None:
        raise ValueError(
            f"config.model.views={views!r} reads Sentinel-1 ({', '.join(s1_views)}), but "
            f"config.data.s1={data.get('s1', 'none')!r}; set it to S1A, S1D or both"
        )
    if "s2_image_aug" in views and not config.get("augment", True):
        raise ValueError(
            f"config.model.views={views!r}: the s2_image_aug view is the crop under random "
            f"augmentation, so config.augment=False would pair each crop with itself; set "
            f"config.augment=True"
        )
    gap = data.get("s1_max_gap_days", 0)
    if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not 0 <= gap < math.inf:
        raise ValueError(f"config.data.s1_max_gap_days must be a number >= 0, got {gap!r}")
    if data.name == "synthetic":
        for key in ("num_patches", "patch_size"):
            if data[key] < 1:
                raise ValueError(f"config.data.{key} must be >= 1, got {data[key]}")
        check_crop_size(config, data.patch_size, "config.data.patch_size")
    _check_batch_memory(config)


def check_schedule(config: ml_collections.ConfigDict) -> None:
    """Refuses a warmup longer than the run (checked once there are steps left to train, so
    that a finished run's "nothing to do" needs no schedule)."""
    warmup = config.optimizer.get("warmup_steps", 0)
    if warmup > config.total_steps:
        raise ValueError(
            f"config.optimizer.warmup_steps={warmup} is more than config.total_steps="
            f"{config.total_steps}; lower it (the learning rate would never reach its peak)"
        )


def check_crop_size(config: ml_collections.ConfigDict, side: int, what: str) -> None:
    """Refuses crops larger than the patches they are cut from."""
    if config.data.crop_size > side:
        raise ValueError(
            f"config.data.crop_size={config.data.crop_size} is larger than the patches "
            f"({what}={side})"
        )
