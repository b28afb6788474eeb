# python launch.py --config=configs/embed.py --config.init_from=workdirs/pretrain --config.data.path=my_tifs --workdir=workdirs/embed  # noqa: E501
"""Embedding maps of a folder of patches: one Cloud-Optimized GeoTIFF per patch.

For each patch of ``data.path`` (``.npz`` patches or GeoTIFF time series, the layouts of
docs/data.md) writes into ``WORKDIR/embeddings/``: ``ID.embeddings.tif`` (the towers'
embeddings on the input's grid: tiled, internal overviews, band descriptions, tags naming
the checkpoint and step), ``ID.valid.tif`` and ``ID.pca.png``. Rerunning the command
resumes a killed run. The task is :mod:`pimc_jax.maps.embed`; the ``maps`` keys are in
:func:`pimc_jax.maps.config.maps_block` (``maps.dtype=float16`` or ``int8`` for smaller
files, ``maps.towers=('rp',)`` for one tower). ``init_from=random`` embeds with fresh
towers. Variants (``:tiny``, ``:paper``): see :mod:`pimc_jax.defaults`.
"""

import ml_collections

from pimc_jax.maps.config import embed_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return embed_config(arg)
