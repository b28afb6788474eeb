"""Tiny versions of the shipped configs, so tests run real steps in seconds."""

from pathlib import Path

import ml_collections

from pimc_jax.launcher import load_config as _load_config_file

ROOT = Path(__file__).resolve().parents[1]


def load_config(name: str) -> ml_collections.ConfigDict:
    """``get_config()`` of ``configs/<name>.py``, loaded the way launch.py loads it."""
    return _load_config_file(ROOT / "configs" / f"{name}.py")


def tiny_pretrain_config(**overrides) -> ml_collections.ConfigDict:
    """configs/pretrain.py shrunk: 16-pixel batches, 8×8 crops, one-stage towers."""
    config = load_config("pretrain")
    config.total_steps = 6
    config.global_batch_size = 16
    config.log_every_steps = 1
    config.checkpoint_every_steps = 2
    config.optimizer.warmup_steps = 2
    data = config.data
    data.num_patches = 8
    data.patch_size = 16
    data.synthetic_min_dates = 8
    data.synthetic_max_dates = 12
    data.max_dates = 16
    data.pixels_per_patch = 4
    data.crop_size = 8
    model = config.model
    for tower in (model.rp_encoder, model.image_encoder):
        tower.stage_sizes = (1,)
        tower.widths = (8,)
        tower.stem_width = 8
        tower.norm_groups = 4
    model.head_hidden_dims = (16,)
    model.embedding_dim = 8
    model.rp_size = 8
    config.update_from_flattened_dict(overrides)
    return config
