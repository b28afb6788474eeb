"""The shipped configs' ``tiny`` variant (:mod:`pimc_jax.defaults`), tiny model specs, and the
environment of a one-CPU ``launch.py`` subprocess, so tests run real steps in seconds."""

import os
from pathlib import Path

import jax
import ml_collections

from pimc_jax.launcher import load_config as _load_config_file
from pimc_jax.models import EncoderSpec, ModelSpec, PIMCParams

ROOT = Path(__file__).resolve().parents[1]


def load_config(name: str) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of ``configs/<name>.py`` for ``name`` = ``NAME[:arg]``, loaded the
    way launch.py loads it."""
    stem, _, arg = name.partition(":")
    return _load_config_file(f"{ROOT / 'configs' / stem}.py" + (f":{arg}" if arg else ""))


def tiny_pretrain_config(**overrides) -> ml_collections.ConfigDict:
    """``configs/pretrain.py:tiny``: 16-pixel batches, 8×8 crops, one-stage towers."""
    config = load_config("pretrain:tiny")
    config.update_from_flattened_dict(overrides)
    return config


# A two-sensor pairing (Sentinel-1 crop ↔ Sentinel-2 crop) on the synthetic patches.
TWO_SENSOR = {"data.s1": "both", "model.views": ("s1_image", "s2_image")}


def one_cpu_env(**env: str) -> dict[str, str]:
    """This process's environment for a ``launch.py`` subprocess on one CPU device (as a
    laptop user has), sharing the tests' compilation cache, plus ``env``."""
    return dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="",
        JAX_COMPILATION_CACHE_DIR=str(ROOT / ".jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1",
        **env,
    )


def strided_encoder(widths: tuple[int, int], norm_groups: int) -> EncoderSpec:
    """A two-stage tower with a stride-2 block and the ImageNet stem (5×5 stride-2 + pool)."""
    return EncoderSpec(
        stage_sizes=(1, 1),
        widths=widths,
        stem_width=widths[0],
        norm_groups=norm_groups,
        stem_kernel=5,
        stem_stride=2,
        stem_pool=True,
    )


def tiny_model_spec(encoder: EncoderSpec, **overrides) -> ModelSpec:
    """Both towers ``encoder``, RGB crops with identity normalisation, plus ``overrides``."""
    fields = dict(
        rp_encoder=encoder,
        image_encoder=encoder,
        image_bands=("B4", "B3", "B2"),
        image_mean=(0.0, 0.0, 0.0),
        image_std=(1.0, 1.0, 1.0),
    )
    return ModelSpec(**{**fields, **overrides})


def perturbed(params: PIMCParams, seed: int = 1) -> PIMCParams:
    """Random parameters without the zero-initialised scales that hide residual branches."""
    leaves, tree = jax.tree.flatten(params.variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noisy = [
        leaf + 0.1 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys, strict=True)
    ]
    return PIMCParams(jax.tree.unflatten(tree, noisy), params.spec)
