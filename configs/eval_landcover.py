# python launch.py --config=configs/eval_landcover.py --config.init_from=workdirs/pretrain --workdir=workdirs/eval_landcover  # noqa: E501
"""Land-cover mapping with an image tower run densely over labelled SITS patches.

``data.name``: ``synthetic`` (default; PASTIS-like patches, no download), ``pastis``
(``data.path`` = the PASTIS or PASTIS-R root: semantic labels, official folds) or
``patches`` (your folder of patches with label rasters; split by spatial blocks).
``tower``: ``s2_image`` (median-composite crop), ``s1_image`` (needs ``data.s1``, e.g.
``S1A`` for PASTIS-R) or ``both``. ``protocol=linear``: a per-pixel logistic head on the
frozen tower's dense features, fitted on ``data.pixels_per_patch`` pixels of each training
patch, L2 chosen on the val folds' mIoU; ``protocol=finetune``: the tower and the head
trained together on the crops around ``finetune.pixels_per_patch`` pixels per patch.
Metrics: overall accuracy, macro-F1 and mIoU over every labelled test pixel (void, 19,
left out for PASTIS-like data). ``init_from``: see :mod:`pimc_jax.evaluation.encoders`;
variants: :mod:`pimc_jax.defaults`.
"""

import ml_collections

from pimc_jax import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = defaults.evaluation_config("eval_landcover", protocol="linear", arg=arg)
    config.tower = "s2_image"  # s2_image | s1_image | both
    config.data.pixels_per_patch = 512  # labelled pixels per training patch for the head
    config.data.tile_rows = 128  # rows of a patch encoded at once (memory)
    defaults.add_pixel_splits(config, pastis_excluded=(19,), arg=arg)  # void
    config.linear = defaults.classification_probe(arg)
    # protocol=finetune: one model (no ensemble), crops around this many pixels per patch;
    # the zero-initialised head learns at 10x the tower's rate.
    config.finetune.ensemble_members = 1
    config.finetune.pixels_per_patch = 64
    config.finetune.head_learning_rate = 3e-2
    if "tiny" in defaults.parse_variants(arg):
        config.data.pixels_per_patch = 64
        config.finetune.pixels_per_patch = 16
    return config
