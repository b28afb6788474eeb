"""Blocks shared by the evaluation configs (imported as ``configs.common``; not a config)."""

import ml_collections

from configs import pretrain


def evaluation_config(task: str, protocol: str) -> ml_collections.ConfigDict:
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
    config.model = pretrain.model_config()  # used by init_from=random only
    config.finetune = ml_collections.ConfigDict(
        dict(
            steps=300,
            batch_size=64,
            learning_rate=1e-2,
            weight_decay=1e-4,
            warmup_steps=20,
            log_every_steps=50,
        )
    )
    config.poll = False
    config.poll_interval_s = 30.0
    config.poll_timeout_s = 3600.0  # stop after this long without a new checkpoint
    return config


def add_pixel_splits(config: ml_collections.ConfigDict, exclude_classes: tuple[int, ...]) -> None:
    """How labelled pixels are split: by fold for patches, seeded for pixel files."""
    config.data.test_path = ""  # data.name=npz: separate test file (else a seeded split)
    config.data.val_fraction = 0.2  # data.name=npz, or patches without folds
    config.data.test_fraction = 0.2  # data.name=npz, or patches without folds
    config.train_folds = (1, 2, 3)
    config.val_folds = (4,)
    config.test_folds = (5,)
    config.exclude_classes = exclude_classes


def classification_probe() -> ml_collections.ConfigDict:
    """``protocol=linear`` for classification: L-BFGS logistic regression, L2 grid."""
    return ml_collections.ConfigDict(
        dict(steps=200, l2_grid=(1e-5, 1e-4, 1e-3, 1e-2))  # L-BFGS iterations
    )
