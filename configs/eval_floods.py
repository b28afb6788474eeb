# python launch.py --config=configs/eval_floods.py --config.init_from=workdirs/pretrain_s1s2 --workdir=workdirs/eval_floods  # noqa: E501
"""Flood segmentation with an image tower run densely over each chip (Sen1Floods11).

``data.name``: ``synthetic`` (default; flood chips whose water rises between dates, no
download) or ``sen1floods11`` (the official hand-labelled layout under ``data.path``:
splits ``train`` / ``valid`` / ``test``). ``tower``: ``s1_image``, ``s2_image`` or ``both``
(the checkpoint must hold the view; ``model.views`` shapes a random encoder). A per-pixel
logistic head on the frozen tower's dense features (``protocol=linear``), fitted on
``data.pixels_per_chip`` valid pixels per training chip, L2 chosen on ``valid``; or
(``protocol=finetune``, one tower) the tower and the head trained together on the crops
around ``finetune.pixels_per_chip`` pixels per chip, the best step chosen on ``valid``. Metric: IoU
of the water class over valid pixels (label −1 ignored), per split and per event.
``init_from``: see :mod:`pimc_jax.evaluation.encoders`; variants: :mod:`pimc_jax.defaults`.
"""

import ml_collections

from pimc_jax import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = defaults.evaluation_config("eval_floods", protocol="linear", arg=arg)
    config.tower = "s2_image"  # s1_image | s2_image | both
    # A random encoder's towers (data.image_bands, s1_image_bands, crop_size shape them).
    config.model.views = ("s1_image", "s2_image")
    config.data.name = "synthetic"  # synthetic | sen1floods11
    config.data.path = ""  # the folder holding v1.1/ for data.name=sen1floods11
    config.data.num_train = 24  # synthetic chips per split
    config.data.num_val = 8
    config.data.num_test = 16
    config.data.chip_size = 64  # synthetic chips (Sen1Floods11's are 512 x 512)
    config.data.flood_dates = 4  # synthetic: dates over which the water rises
    config.data.pixels_per_chip = 2000  # valid pixels per training chip for the head
    config.data.image_normalization = "checkpoint"  # checkpoint | train_split
    config.data.tile_rows = 128  # rows of a chip encoded at once (memory)
    config.linear = defaults.classification_probe(arg)
    # protocol=finetune: one model (no ensemble), crops around this many pixels per chip.
    config.finetune.ensemble_members = 1
    config.finetune.pixels_per_chip = 256
    # The zero-initialised head learns at 10x the tower's rate (3e-3), as a probe on frozen
    # features would converge.
    config.finetune.head_learning_rate = 3e-2
    if "tiny" in defaults.parse_variants(arg):
        config.data.update(
            dict(num_train=4, num_val=2, num_test=3, chip_size=24, pixels_per_chip=200)
        )
        config.finetune.pixels_per_chip = 32
    return config
