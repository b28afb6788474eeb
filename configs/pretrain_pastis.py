# python launch.py --config=configs/pretrain_pastis.py --config.data.path=/data/PASTIS --workdir=gs://bucket/pimc
"""Paper-scale PIMC pre-training on PASTIS: ResNet-18 towers, large global batch, long schedule.

Meant for accelerators (a TPU pod slice or a multi-GPU node): bfloat16 compute, 4096
pairs per step split over every device of every host, Hilbert-curve pixel sampling
(what the paper reports), 32×32 crops of all ten bands. Override the batch or schedule
from the command line to fit smaller machines.

Plot representation: the library's default (all seven indices PASTIS's ten bands allow,
distance + difference + level plots; see :mod:`pimc_jax.defaults`). The paper's exact
NDVI/EVI/SAVI distance plots: ``--config=configs/pretrain_pastis.py:paper``.
"""

import dataclasses

import ml_collections

from pimc_jax import defaults
from pimc_jax.models import EncoderSpec


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """``arg``: variants of :mod:`pimc_jax.defaults` (``paper``: NDVI/EVI/SAVI distance
    plots, the paper's exact method)."""
    config = defaults.pretrain_config(arg)
    config.total_steps = 100_000
    config.global_batch_size = 4096
    config.log_every_steps = 100
    config.checkpoint_every_steps = 2_000
    config.keep_checkpoints = 5

    data = config.data
    data.name = "pastis"
    data.path = ""  # --config.data.path=PASTIS_ROOT (metadata.geojson, DATA_S2/, ...)
    data.folds = (1, 2, 3)  # folds 4-5 stay unseen for the evaluations
    data.max_dates = 64  # PASTIS series have 33-61 dates
    data.pixels_per_patch = 32
    data.sampling = "hilbert"
    data.image_date = "random_clear"
    data.image_bands = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    data.crop_size = 32
    data.num_threads = 8
    data.prefetch = 8

    resnet18 = dataclasses.asdict(EncoderSpec())  # ResNet-18 widths, small-input stem
    model = config.model
    model.rp_encoder.update(resnet18)
    model.image_encoder.update(resnet18)
    model.head_hidden_dims = (512,)
    model.embedding_dim = 128
    model.temperature = 0.07
    model.dtype = "bfloat16"
    model.rp_size = 64

    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 2_000
    config.optimizer.weight_decay = 0.05
    return config
