# python launch.py --config=configs/pretrain_pastis.py --config.data.path=/data/PASTIS --workdir=gs://bucket/pimc
"""Paper-scale PIMC pre-training on PASTIS: ResNet-18 towers, large global batch, long schedule.

Meant for accelerators (a TPU pod slice or a multi-GPU node): bfloat16 compute, 4096
pairs per step split over every device of every host, Hilbert-curve pixel sampling
(what the paper reports), 32×32 crops of all ten bands. Override the batch or schedule
from the command line to fit smaller machines.

Plot representation: the library's default (all seven indices PASTIS's ten bands allow,
distance + difference + level plots; see ``configs/pretrain.py``). The paper's exact
NDVI/EVI/SAVI distance plots: ``--config=configs/pretrain_pastis.py:paper``.
"""

from configs import pretrain


def get_config(variant: str = ""):
    """``variant``: ``""`` (the library's plot representation) or ``paper`` (NDVI/EVI/SAVI
    distance plots, the paper's exact method); see ``configs/pretrain.py``."""
    config = pretrain.get_config(variant)
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

    resnet18 = dict(
        stage_sizes=(2, 2, 2, 2),
        widths=(64, 128, 256, 512),
        stem_width=64,
        stem_kernel=3,
        stem_stride=1,
        stem_pool=False,
        norm_groups=32,
    )
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
