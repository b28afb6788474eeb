"""Blocks shared by the evaluation configs (imported as ``configs.common``; not a config)."""

import ml_collections


def finetune_config() -> ml_collections.ConfigDict:
    """``protocol=finetune``: AdamW on the encoder and a linear head."""
    return ml_collections.ConfigDict(
        dict(
            steps=300,
            batch_size=64,
            learning_rate=1e-2,
            weight_decay=1e-4,
            warmup_steps=20,
            log_every_steps=50,
        )
    )


def add_polling(config: ml_collections.ConfigDict) -> None:
    """``poll=True`` re-evaluates every new checkpoint of the ``init_from`` workdir."""
    config.poll = False
    config.poll_interval_s = 30.0
    config.poll_timeout_s = 3600.0
