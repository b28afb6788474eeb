# python launch.py --config=configs/pretrain.py --workdir=workdirs/pretrain
"""Default PIMC pre-training: the embedded synthetic dataset and small towers.

Finishes in a few minutes on a 2-core laptop CPU and learns: in-batch retrieval
accuracy ends far above chance (1 / global_batch_size). Every key can be
overridden from the command line, e.g. ``--config.total_steps=50``.

The keys and their defaults live in :func:`pimc_jax.defaults.pretrain_config`.
Variants (``--config=configs/pretrain.py:VARIANT[,VARIANT]``, see :mod:`pimc_jax.defaults`):
``paper`` (the paper's exact plot representation: NDVI, EVI and SAVI, one unthresholded
``|x_i − x_j|`` plot each) and ``tiny`` (seconds-long runs).
"""

import ml_collections

from pimc_jax import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return defaults.pretrain_config(arg)
