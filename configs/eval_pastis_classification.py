# python launch.py --config=configs/eval_pastis_classification.py --config.init_from=workdirs/pretrain --workdir=workdirs/eval_pastis_classification  # noqa: E501
"""Pixel classification with the recurrence-plot encoder (PASTIS pixel classification).

Labelled pixels are sampled per patch (``data.pixels_per_patch``) from the same source as
pre-training (``configs.pretrain.data_config()``: the synthetic PASTIS-like set by default),
background (0) and void (19) left out. Patches are split by fold: ``train_folds`` fit the
classifier, ``val_folds`` choose the linear probe's regulariser, ``test_folds`` give the
reported metrics (PASTIS official folds 1..5; synthetic patches get folds 1..5 round robin).

Sources (``data.name``): ``synthetic`` | ``pastis`` (``data.path`` = PASTIS root) |
``patches`` (your patch folder) | ``npz`` (your pixel series, ``data.path``; optional
``data.test_path``, else a seeded stratified split by ``data.val_fraction`` /
``data.test_fraction``). Classes left out: ``exclude_classes`` if given, else PASTIS's
background and void for ``pastis``/``synthetic`` and none for your own files.

Variants: ``configs/eval_pastis_classification.py:paper`` gives a random-init encoder the
paper's exact plot representation (see ``configs/pretrain.py``).

``init_from``: a pre-training workdir (latest checkpoint), a ``checkpoints/<step>`` directory,
or ``random`` (the baseline: fresh parameters from ``model``). ``protocol``: ``linear`` (frozen
encoder, logistic-regression probe) or ``finetune`` (encoder + linear head, AdamW).
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = common.evaluation_config(
        "eval_pastis_classification", protocol="linear", variant=variant
    )
    config.data.pixels_per_patch = 64  # labelled pixels drawn per patch
    common.add_pixel_splits(config, pastis_excluded=(0, 19))  # background and void
    config.linear = common.classification_probe()
    return config
