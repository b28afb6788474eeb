# python launch.py --config=configs/pretrain.py --workdir=workdirs/pretrain
"""Default PIMC pre-training: the embedded synthetic dataset and small towers.

Finishes in a few minutes on a 2-core laptop CPU and learns: in-batch retrieval
accuracy ends far above chance (1 / global_batch_size). Every key can be
overridden from the command line, e.g. ``--config.total_steps=50``.

Variants (``--config=configs/pretrain.py:VARIANT``):

- ``""`` (default): the library's plot representation (``model.indices``,
  ``model.rp_channels`` below), chosen with ``bench/pixel_benchmark.py`` on real pixels.
- ``paper``: the paper's exact representation: NDVI, EVI and SAVI, one unthresholded
  ``|x_i − x_j|`` plot each.
"""

import ml_collections


def data_config() -> ml_collections.ConfigDict:
    """The ``data`` block shared by the pre-training and pixel-evaluation configs."""
    data = ml_collections.ConfigDict()
    data.name = "synthetic"  # synthetic | pastis | patches
    data.path = ""  # PASTIS root or patch folder for the real sources
    data.folds = ()  # () = all folds
    # Embedded synthetic generator.
    data.num_patches = 40
    data.patch_size = 32
    data.synthetic_seed = 0
    data.synthetic_min_dates = 24
    data.synthetic_max_dates = 40
    # Pair sampling.
    data.max_dates = 64  # series are padded (or evenly subsampled) to this many dates
    # Few pixels per patch: more patches, hence more distinct parcels, per batch.
    data.pixels_per_patch = 4
    data.sampling = "uniform"  # uniform | hilbert
    # The median composite gives the small model a steadier image view than one random
    # clear date (lower loss in the same number of steps on the synthetic data).
    data.image_date = "median"  # random_clear | median | fixed_index
    data.image_bands = ("B4", "B3", "B2", "B8")
    data.crop_size = 16
    data.num_threads = 2
    data.prefetch = 4
    return data


VARIANTS: tuple[str, ...] = ("", "paper")


def model_config(variant: str = "") -> ml_collections.ConfigDict:
    """The ``model`` block shared by pre-training and the evaluations (``variant``: see top)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown config variant {variant!r}; known: {VARIANTS}")
    model = ml_collections.ConfigDict()
    # Two-stage ResNets, 16 and 32 channels: compiles in seconds and trains on a laptop CPU.
    small_resnet = dict(
        stage_sizes=(1, 1),
        widths=(16, 32),
        stem_width=16,
        stem_kernel=3,
        stem_stride=1,
        stem_pool=False,
        norm_groups=8,
    )
    model.rp_encoder = ml_collections.ConfigDict(small_resnet)
    model.image_encoder = ml_collections.ConfigDict(small_resnet)
    model.head_hidden_dims = (64,)
    model.embedding_dim = 32
    model.learnable_temperature = True
    model.temperature = 0.1
    model.dtype = "float32"  # bfloat16 for accelerators
    # Spectral indices turned into plots: "auto" = every index of pimc_jax.indices.INDEX_NAMES
    # the data's bands allow (ready-made index bands included), or a tuple of names.
    model.indices = ("auto",)
    # Plot kinds per index: distance |x_i - x_j|, difference x_j - x_i, level (x_i + x_j) / 2.
    model.rp_channels = ("distance", "difference", "level")
    if variant == "paper":
        model.indices = ("ndvi", "evi", "savi")
        model.rp_channels = ("distance",)
    model.rp_size = 24
    model.rp_normalize = False  # unthresholded |x_i - x_j| plots
    model.rp_dimension = 1
    model.rp_time_delay = 1
    model.rp_threshold = ml_collections.config_dict.placeholder(str)
    model.rp_percentage = 10.0
    return model


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "pretrain"
    config.seed = 0
    config.total_steps = 300
    config.global_batch_size = 128
    config.log_every_steps = 20
    config.checkpoint_every_steps = 100
    config.keep_checkpoints = 3
    config.augment = True
    config.data = data_config()
    config.model = model_config(variant)
    config.optimizer = ml_collections.ConfigDict(
        dict(
            name="adamw",
            learning_rate=3e-3,
            end_factor=0.01,
            warmup_steps=30,
            b1=0.9,
            b2=0.999,
            weight_decay=1e-4,
            grad_clip_norm=1.0,
        )
    )
    config.distributed = ml_collections.ConfigDict(
        dict(coordinator_address="", num_processes=0, process_id=-1)
    )
    return config
