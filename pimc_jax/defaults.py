"""The library's defaults, as ``ml_collections`` blocks: their one source.

The files in ``configs/`` are named experiments built from these blocks, and
:class:`pimc_jax.models.ModelSpec` takes its field defaults from :func:`model_config` and
:func:`data_config`, so a default ``ModelSpec()`` and a default run describe the same model.

Every ``get_config(arg)`` takes ``arg``, a comma-separated list of variants
(:data:`VARIANTS`), e.g. ``--config=configs/pretrain.py:paper,tiny``:

- ``paper``: the paper's exact plot representation: NDVI, EVI and SAVI, one unthresholded
  ``|x_i − x_j|`` plot each (the default is every index the bands allow, with distance,
  difference and level plots, chosen with ``bench/pixel_benchmark.py`` on real pixels).
- ``tiny``: one-stage 8-channel towers, small synthetic patches and a few steps, so that
  a run takes seconds (what the tests run).
"""

from __future__ import annotations

import ml_collections

VARIANTS: tuple[str, ...] = ("paper", "tiny")


def parse_variants(arg: str) -> frozenset[str]:
    """``"paper,tiny"`` → ``{"paper", "tiny"}``; an unknown name is an error."""
    names = frozenset(name.strip() for name in arg.split(",") if name.strip())
    unknown = sorted(names - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown config variant(s) {unknown}; known: {VARIANTS}")
    return names


def data_config(arg: str = "") -> ml_collections.ConfigDict:
    """The ``data`` block shared by pre-training and the pixel evaluations."""
    data = ml_collections.ConfigDict()
    data.name = "synthetic"  # synthetic | pastis | patches
    data.path = ""  # PASTIS root or patch folder for the real sources
    data.folds = ()  # () = all folds
    # Sentinel-1 beside Sentinel-2 (pimc_jax.data.radar): none | S1A | S1D | both (PASTIS-R
    # orbits, both merged by date); any value but none also makes synthetic patches carry S1.
    data.s1 = "none"
    # Sentinel-2 L2A SCL classes that make an observation a gap in user data (`scl` arrays or
    # bands): no data, saturated, cloud shadow, cloud medium/high, cirrus; snow (11) is kept.
    data.scl_invalid_classes = (0, 1, 3, 8, 9, 10)
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
    # "auto": B4, B3, B2, B8 where the data hold them, else every band (e.g. an NDVI-only
    # stack); or band names (pimc_jax.indices.resolve_image_bands).
    data.image_bands = ("auto",)
    # Views that read Sentinel-1 (model.views): the S1 crop's channels, and the largest
    # |S1 date − S2 image date| in days for an ``s1_image`` view (pairs beyond it are dropped).
    data.s1_image_bands = ("VV", "VH", "VV/VH")
    data.s1_max_gap_days = 6
    # s1_rp series: each date's backscatter averaged in linear power over the odd
    # s1_multilook × s1_multilook window around the pixel (a speckle filter; 1 = the pixel
    # alone). A single radar pixel is speckle-bound; 3 was chosen on the probe's validation
    # split among 1, 3 and 5 (docs/views.md).
    data.s1_multilook = 3
    data.crop_size = 16
    data.num_threads = 2
    data.prefetch = 4
    if "tiny" in parse_variants(arg):
        data.update(
            dict(
                num_patches=8,
                patch_size=16,
                synthetic_min_dates=8,
                synthetic_max_dates=12,
                max_dates=16,
                crop_size=8,
            )
        )
    return data


def encoder_config(arg: str = "") -> ml_collections.ConfigDict:
    """One tower's ResNet: two stages of 16 and 32 channels (compiles in seconds and
    trains on a laptop CPU); ``tiny``: one stage of 8."""
    if "tiny" in parse_variants(arg):
        widths = dict(stage_sizes=(1,), widths=(8,), stem_width=8, norm_groups=4)
    else:
        widths = dict(stage_sizes=(1, 1), widths=(16, 32), stem_width=16, norm_groups=8)
    # input_means: the pooled features also carry each input channel's mean over space
    # (pimc_jax.models.ResNetEncoder), set for the plot tower by model_config.
    # padding: "same" (zero padding inside the crop, the paper's ResNet) or "valid" (none,
    # LayerNorm per position: the image tower's dense encoding is then exact and one
    # fully convolutional pass; pimc_jax.valid_tower, docs/performance.md).
    return ml_collections.ConfigDict(
        dict(
            stem_kernel=3,
            stem_stride=1,
            stem_pool=False,
            input_means=False,
            padding="same",
            **widths,
        )
    )


def model_config(arg: str = "") -> ml_collections.ConfigDict:
    """The ``model`` block shared by pre-training and the evaluations (variants: top)."""
    variants = parse_variants(arg)
    model = ml_collections.ConfigDict()
    # The view feeding each tower (pimc_jax.models.VIEWS): tower 1 (``rp_encoder``) and
    # tower 2 (``image_encoder``). s2_rp / s1_rp: recurrence plots of the Sentinel-2 index /
    # Sentinel-1 radar series; s2_image / s1_image: crops around the pixel (the S1 crop at
    # the S1 date nearest to the S2 image date). Views reading S1 need data.s1 != "none".
    model.views = ("s2_rp", "s2_image")
    # Radar series of an s1_rp view (pimc_jax.indices.RADAR_INDEX_NAMES) or "auto".
    model.s1_indices = ("auto",)
    model.rp_encoder = encoder_config(arg)
    # The plot tower's features end in each plot channel's mean (a level plot's is the
    # series' mean level), which its GroupNorm would otherwise take out (docs/real_pixels.md).
    model.rp_encoder.input_means = "paper" not in variants
    model.image_encoder = encoder_config(arg)
    model.head_hidden_dims = (64,)
    model.embedding_dim = 32
    model.learnable_temperature = True
    model.temperature = 0.1
    model.dtype = "float32"  # bfloat16 for accelerators
    # Series turned into plots: "auto" = every index of pimc_jax.indices.INDEX_NAMES the data's
    # bands allow (ready-made index bands included), "bands" = every reflectance band, or
    # index and band names (pimc_jax.indices.resolve_indices).
    model.indices = ("auto",)
    # Plot kinds per index: distance |x_i - x_j|, difference x_j - x_i, level (x_i + x_j) / 2.
    model.rp_channels = ("distance", "difference", "level")
    # The plots' time axis spans each pixel's acquisitions (one axis for all pixels of a
    # calendar, whatever their clouds), or its "valid" (counted) dates, as in the paper.
    model.rp_span = "acquisitions"
    if "paper" in variants:
        model.indices = ("ndvi", "evi", "savi")
        model.rp_channels = ("distance",)
        model.rp_span = "valid"
    # S: series are resampled to S steps, S×S plots; 0 = one step per acquisition of the
    # median pixel, within 8..24 (pimc_jax.models.auto_rp_size; docs/real_pixels.md).
    model.rp_size = 0
    if "paper" in variants:
        model.rp_size = 12
    model.rp_normalize = False  # unthresholded |x_i - x_j| plots
    model.rp_dimension = 1
    model.rp_time_delay = 1
    model.rp_threshold = ml_collections.config_dict.placeholder(str)
    model.rp_percentage = 10.0
    if "tiny" in variants:
        model.head_hidden_dims = (16,)
        model.embedding_dim = 8
        model.rp_size = 8
    return model


def pretrain_config(arg: str = "") -> ml_collections.ConfigDict:
    """What ``configs/pretrain.py`` runs: the embedded synthetic set, small towers."""
    config = ml_collections.ConfigDict()
    config.task = "pretrain"
    config.seed = 0
    config.total_steps = 300
    config.global_batch_size = 128
    config.log_every_steps = 20
    config.checkpoint_every_steps = 100
    config.keep_checkpoints = 3
    # Resuming a workdir refuses a changed seed, batch size, optimizer.*, data.*, augment or
    # model.* (anything that alters the run's trajectory); True resumes anyway, with a
    # warning. Extending total_steps needs no override (pimc_jax/train.py, check_resume).
    config.resume_allow_changes = False
    config.augment = True
    config.data = data_config(arg)
    config.model = model_config(arg)
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
    if "tiny" in parse_variants(arg):
        config.total_steps = 6
        config.global_batch_size = 16
        config.log_every_steps = 1
        config.checkpoint_every_steps = 2
        config.optimizer.warmup_steps = 2
    return config


def evaluation_config(task: str, protocol: str, arg: str = "") -> ml_collections.ConfigDict:
    """What every evaluation config holds; each then adds its task's keys.

    ``task``: a name of :data:`pimc_jax.evaluation.EVALUATORS`. ``init_from`` and
    ``protocol``: see :mod:`pimc_jax.evaluation.encoders`. ``poll=True``
    re-evaluates every new checkpoint of ``init_from``.
    """
    config = ml_collections.ConfigDict()
    config.task = task
    config.init_from = "random"  # pre-training workdir | checkpoints/<step> dir | random
    config.protocol = protocol  # linear | finetune
    config.seed = 0
    config.data = data_config(arg)
    config.data.eval_seed = 0  # data sampling and seeded splits (the same for every model)
    config.model = model_config(arg)  # used by init_from=random only
    config.finetune = finetune_config(arg)
    config.poll = False
    config.poll_interval_s = 30.0
    config.poll_timeout_s = 3600.0  # stop after this long without a new checkpoint
    return config


def finetune_config(arg: str = "") -> ml_collections.ConfigDict:
    """``protocol=finetune``: the tower's backbone plus a linear head, AdamW, warmup-cosine.

    The classification tasks fine-tune a cross-fitted ensemble of five members, each
    keeping the best held-out step of an exponential moving average of its weights
    (forecasting trains one model); pixel classification averages them with a forest (and
    LightGBM from 100 training pixels on) on the raw band series (``trees``); both tasks
    then divide the probabilities by the class prior to a power chosen out of fold
    (``prior_correction``; neither in the ``paper`` variant); class
    weighting, label smoothing and series augmentation are off. Chosen with
    ``bench/pixel_benchmark.py`` on real pixels; the measurements are in
    ``docs/real_pixels.md``.
    """
    tune = ml_collections.ConfigDict(
        dict(
            steps=600,
            batch_size=64,
            learning_rate=3e-3,
            head_learning_rate=0.0,  # 0 = learning_rate
            weight_decay=1e-4,
            warmup_steps=20,
            eval_every_steps=25,  # select the best validation step; 0 = keep the last
            ema_decay=0.98,  # > 0: score and keep an exponential moving average of the weights
            class_weighting="none",  # none | sqrt_inverse | inverse
            label_smoothing=0.0,  # classification targets (1 - ε)·one-hot + ε / K
            # Classification: K members, member k trains on all but part k of the stratified
            # K-fold of train + val and keeps its best step on part k; the test predictions
            # average the members' class probabilities (K× the time; 1 = one model trained
            # on train, selected on val).
            ensemble_members=5,
            # Pixel classification: tree models fitted beside the fine-tuned plot tower on
            # the raw band series, their class probabilities averaged with the tower's
            # (pimc_jax.evaluation.trees): "none", "+"-joined names of "forest"
            # (RandomForest), "lgbm" (LightGBM) and "extra_trees" (extremely randomised trees),
            # or "auto" (forest and LightGBM from 100 training pixels on, else the forest).
            trees="auto",
            # How the tower's and the trees' probabilities are combined: "mean", or "oof"
            # (weights chosen on out-of-fold predictions of train + val; needs
            # ensemble_members >= 2).
            blend="mean",
            # Classification with a cross-fitted ensemble: the test probabilities divided by
            # the training class prior to a power, "auto" (chosen on the out-of-fold
            # predictions: accuracy + macro-F1; pimc_jax.evaluation.priors), "none", or the
            # power itself (0 = none, 1 = balanced).
            prior_correction="auto",
            date_dropout=0.0,  # series augmentation (plot tower only)
            date_jitter_days=0.0,
            noise_std=0.0,
            log_every_steps=50,
        )
    )
    if "tiny" in parse_variants(arg):
        tune.update(
            dict(
                steps=3,
                batch_size=16,
                warmup_steps=1,
                log_every_steps=1,
                ensemble_members=1,
                trees="none",
            )
        )
    if "paper" in parse_variants(arg):
        tune.trees = "none"  # the paper's classifier is the fine-tuned tower alone
        tune.prior_correction = "none"
    return tune


def add_pixel_splits(
    config: ml_collections.ConfigDict, pastis_excluded: tuple[int, ...], arg: str = ""
) -> None:
    """How labelled pixels are split (by fold for patches, seeded for pixel files) and which
    classes are left out; ``tiny``: 12 pixels per patch."""
    config.data.test_path = ""  # data.name=npz: separate test file (else a seeded split)
    config.data.val_fraction = 0.2  # data.name=npz, or patches without folds
    config.data.test_fraction = 0.2  # data.name=npz, or patches without folds
    # data.name=npz: stratified k-fold instead of test_fraction (the test split is fold
    # cv_fold of cv_folds; bench/pixel_benchmark.py runs every fold). 0 = off.
    config.data.cv_folds = 0
    config.data.cv_fold = 0
    # Patches without folds: whole block_size × block_size tiles go to train, val or test
    # (pimc_jax.evaluation.pixels.block_split_rows); 0 = split pixels like pixel files.
    config.data.block_size = 16
    config.train_folds = (1, 2, 3)
    config.val_folds = (4,)
    config.test_folds = (5,)
    # Classes left out. None: PASTIS's convention for data.name=pastis|synthetic
    # (pastis_exclude_classes); pixel files and patch folders keep every class.
    config.exclude_classes = ml_collections.config_dict.placeholder(tuple)
    config.pastis_exclude_classes = pastis_excluded
    if "tiny" in parse_variants(arg):
        config.data.pixels_per_patch = 12


def classification_probe(arg: str = "") -> ml_collections.ConfigDict:
    """``protocol=linear`` for classification: L-BFGS logistic regression, L2 grid."""
    if "tiny" in parse_variants(arg):
        return ml_collections.ConfigDict(dict(steps=30, l2_grid=(1e-3, 1e-1)))
    return ml_collections.ConfigDict(
        dict(steps=200, l2_grid=(1e-5, 1e-4, 1e-3, 1e-2))  # L-BFGS iterations
    )
