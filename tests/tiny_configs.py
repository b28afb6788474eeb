"""The shipped configs' ``tiny`` variant (:mod:`pimc_jax.defaults`), so tests run real steps
in seconds."""

from pathlib import Path

import ml_collections

from pimc_jax.launcher import load_config as _load_config_file

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
