# python launch.py --config=configs/eval_eurosat.py --config.init_from=workdirs/pretrain --workdir=workdirs/eval_eurosat  # noqa: E501
"""Land-cover image classification with the image encoder (EuroSAT).

``data.name``: ``synthetic`` (default; a EuroSAT stand-in of ten single-date land-cover
scene classes built from the same spectra as the synthetic patches, no download) or
``eurosat`` (the official archives in ``data.path``; ``data.eurosat_variant`` ``rgb`` or
``all``; splits ``train`` / ``validation`` / ``test`` from the split lists in that
directory, else the seeded stratified 16 200 / 5 400 / 5 400 split of
:mod:`pimc_jax.data.eurosat`). The image bands the encoder needs (``spec.image_bands`` of
the checkpoint, ``data.image_bands`` for a random one) are picked by name: ``rgb`` serves
only encoders pre-trained on B4, B3, B2 (``--config.data.image_bands="('B4','B3','B2')"``).

Images are standardised per band with the pre-training statistics stored in the checkpoint
(``data.image_normalization="checkpoint"``: reflectance, like the synthetic scenes and
EuroSAT ``all``) or with the training split's (``"train_split"``: needed for 8-bit EuroSAT
``rgb``); ``"auto"`` picks by source. A random encoder always uses the training split's.
Metrics: top-1 (overall) accuracy, macro-F1, per-class table.
``init_from`` / ``protocol`` / ``poll``: see :mod:`pimc_jax.evaluation.encoders`;
variants: :mod:`pimc_jax.defaults`.
"""

import ml_collections

from pimc_jax import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = defaults.evaluation_config("eval_eurosat", protocol="linear", arg=arg)
    # data.image_bands / crop_size shape a random model.
    config.data.name = "synthetic"  # synthetic | eurosat
    config.data.path = ""  # EuroSAT archive directory for data.name=eurosat
    config.data.eurosat_variant = "rgb"  # rgb | all
    config.data.image_size = 32  # synthetic scenes (EuroSAT images are 64 x 64)
    config.data.num_train = 1000  # synthetic split sizes
    config.data.num_val = 250
    config.data.num_test = 500
    config.data.max_train_examples = 0  # 0 = all; else a seeded stratified subset
    config.data.image_normalization = "auto"  # auto | train_split | checkpoint
    config.linear = defaults.classification_probe(arg)
    if "tiny" in defaults.parse_variants(arg):
        config.data.update(dict(image_size=16, num_train=40, num_val=20, num_test=30))
    return config
