# python launch.py --config=configs/pretrain_augment.py --workdir=workdirs/pretrain_augment
"""The augmentation-only baseline: two augmentations of one Sentinel-2 crop (SimCLR-style).

Tower 1 (``rp_encoder``) reads the Sentinel-2 crop around the pixel under the SimCLR
chain of :func:`pimc_jax.augment.strong_augment` (random resized crop, flips and
rotations, spectral jitter, Gaussian blur), tower 2 (``image_encoder``) the same crop with
flips and rotations only: the positives come from augmentation alone, where PIMC pairs
the pixel's time series with its crop and Jain et al. (2022) a Sentinel-1 crop with the
Sentinel-2 one (``configs/pretrain_s1s2.py``). Same towers, loop and loss; only the
positives differ. Evaluate tower 2 (``s2_image``) as for the other pairings, e.g.
``configs/eval_floods.py --config.tower=s2_image``. Variants: see :mod:`pimc_jax.defaults`.
"""

import ml_collections

from pimc_jax import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = defaults.pretrain_config(arg)
    config.model.views = ("s2_image_aug", "s2_image")
    # One date per crop, as for the S1 ↔ S2 pairing (the median composite would hide the
    # acquisition-to-acquisition changes an image tower sees at inference).
    config.data.image_date = "random_clear"
    return config
