"""Blocks shared by the evaluation configs (imported as ``configs.common``; not a config)."""

import ml_collections

from configs import pretrain


def evaluation_config(task: str, protocol: str, variant: str = "") -> ml_collections.ConfigDict:
    """What every evaluation config holds; each then adds its task's keys.

    ``init_from``: a pre-training workdir (latest checkpoint), a ``checkpoints/<step>``
    directory, or ``random`` (the baseline: fresh parameters from ``model``).
    ``protocol``: ``linear`` (frozen encoder, probe) or ``finetune`` (encoder + linear
    head, AdamW). ``poll=True`` re-evaluates every new checkpoint of ``init_from``.
    """
    config = ml_collections.ConfigDict()
    config.task = task
    config.init_from = "random"  # pre-training workdir | checkpoints/<step> dir | random
    config.protocol = protocol  # linear | finetune
    config.seed = 0
    config.data = pretrain.data_config()
    config.data.eval_seed = 0  # data sampling and seeded splits (the same for every model)
    config.model = pretrain.model_config(variant)  # used by init_from=random only
    config.finetune = finetune_config()
    config.poll = False
    config.poll_interval_s = 30.0
    config.poll_timeout_s = 3600.0  # stop after this long without a new checkpoint
    return config


def finetune_config() -> ml_collections.ConfigDict:
    """``protocol=finetune``: the tower's backbone plus a linear head, AdamW, warmup-cosine.

    Chosen with ``bench/pixel_benchmark.py`` on the 5-fold means of the real development
    pixel file (README, "Real pixels"): the best validation step is kept; class weighting
    (``sqrt_inverse``) raised macro-F1 but cost more accuracy than it gave, and series
    augmentation changed nothing beyond the spread, so both are off.
    """
    return ml_collections.ConfigDict(
        dict(
            steps=600,
            batch_size=64,
            learning_rate=3e-3,
            head_learning_rate=0.0,  # 0 = learning_rate
            weight_decay=1e-4,
            warmup_steps=20,
            eval_every_steps=25,  # select the best validation step; 0 = keep the last
            class_weighting="none",  # none | sqrt_inverse | inverse
            date_dropout=0.0,  # series augmentation (plot tower only)
            date_jitter_days=0.0,
            noise_std=0.0,
            log_every_steps=50,
        )
    )


def add_pixel_splits(config: ml_collections.ConfigDict, pastis_excluded: tuple[int, ...]) -> None:
    """How labelled pixels are split (by fold for patches, seeded for pixel files) and which
    classes are left out."""
    config.data.test_path = ""  # data.name=npz: separate test file (else a seeded split)
    config.data.val_fraction = 0.2  # data.name=npz, or patches without folds
    config.data.test_fraction = 0.2  # data.name=npz, or patches without folds
    # data.name=npz: stratified k-fold instead of test_fraction (the test split is fold
    # cv_fold of cv_folds; bench/pixel_benchmark.py runs every fold). 0 = off.
    config.data.cv_folds = 0
    config.data.cv_fold = 0
    config.train_folds = (1, 2, 3)
    config.val_folds = (4,)
    config.test_folds = (5,)
    # Classes left out. None: PASTIS's convention for data.name=pastis|synthetic
    # (pastis_exclude_classes); pixel files and patch folders keep every class.
    config.exclude_classes = ml_collections.config_dict.placeholder(tuple)
    config.pastis_exclude_classes = pastis_excluded


def classification_probe() -> ml_collections.ConfigDict:
    """``protocol=linear`` for classification: L-BFGS logistic regression, L2 grid."""
    return ml_collections.ConfigDict(
        dict(steps=200, l2_grid=(1e-5, 1e-4, 1e-3, 1e-2))  # L-BFGS iterations
    )
