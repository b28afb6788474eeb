# python launch.py --config=configs/eval_pastis_classification.py --config.init_from=workdirs/pretrain --workdir=workdirs/eval_pastis_classification  # noqa: E501
"""Pixel classification with the recurrence-plot encoder (PASTIS pixel classification).

Labelled pixels are sampled per patch (``data.pixels_per_patch``) from the same source as
pre-training (:func:`pimc_jax.defaults.data_config`: the synthetic PASTIS-like set by default),
background (0) and void (19) left out. Patches are split by fold: ``train_folds`` fit the
classifier, ``val_folds`` choose the linear probe's regulariser, ``test_folds`` give the
reported metrics (PASTIS official folds 1..5; synthetic patches get folds 1..5 round robin).

Sources (``data.name``): ``synthetic`` | ``pastis`` (``data.path`` = PASTIS root) |
``patches`` (your patch folder) | ``npz`` (your pixel series, ``data.path``; optional
``data.test_path``, else a seeded stratified split by ``data.val_fraction`` /
``data.test_fraction``). Classes left out: ``exclude_classes`` if given, else PASTIS's
background and void for ``pastis``/``synthetic`` and none for your own files.

``init_from`` / ``protocol`` / ``poll``: see :mod:`pimc_jax.evaluation.encoders`
(``linear`` = logistic-regression probe on frozen features). Variants (``:paper``,
``:tiny``): see :mod:`pimc_jax.defaults`.
"""

import ml_collections

from pimc_jax import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = defaults.evaluation_config("eval_pastis_classification", protocol="linear", arg=arg)
    config.data.pixels_per_patch = 64  # labelled pixels drawn per patch
    defaults.add_pixel_splits(config, pastis_excluded=(0, 19), arg=arg)  # background and void
    config.linear = defaults.classification_probe(arg)
    return config
