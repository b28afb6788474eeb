# python launch.py --config=configs/pretrain_s1s2.py --workdir=workdirs/pretrain_s1s2
"""Sentinel-1 image ↔ Sentinel-2 image pre-training (the pairing of Jain et al., 2022).

Tower 1 (``rp_encoder``) reads a Sentinel-1 crop around the pixel (VV, VH and VV/VH in
dB) at the S1 date nearest to the Sentinel-2 image date, tower 2 (``image_encoder``) the
Sentinel-2 crop; pairs whose nearest S1 date is more than ``data.s1_max_gap_days`` away
are dropped. ``data.s1="both"`` loads both PASTIS-R orbits (or synthetic radar). Other
pairings: ``--config.model.views='("s1_rp","s2_image")'`` or ``'("s2_rp","s1_image")'``
(docs/views.md). Variants: see :mod:`pimc_jax.defaults` (``:tiny`` for seconds-long runs).
"""

import ml_collections

from pimc_jax import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = defaults.pretrain_config(arg)
    config.data.s1 = "both"
    config.model.views = ("s1_image", "s2_image")
    # A single date: with the median composite the S1 date would be the season's middle.
    config.data.image_date = "random_clear"
    return config
