# python launch.py --config=configs/eval_pastis_forecast.py --config.init_from=workdirs/pretrain --workdir=workdirs/eval_pastis_forecast  # noqa: E501
"""Pixel index forecasting with the recurrence-plot encoder (PASTIS forecasting).

For each sampled pixel the NDVI/EVI/SAVI series is computed from the raw bands on its valid
dates only (no-data and invalid-index dates dropped); pixels with fewer than
``input_length + horizon`` valid dates are skipped. Each index series is z-scored with the
mean and std of its own first ``input_length`` observations (no statistics of the targets
leak into the inputs; the std is floored at ``min_std``;
``forecast.zscore="window"`` uses all 42 observations instead). The model sees the recurrence
plot of the ``input_length`` input observations (encoder → linear head) and predicts the
next ``horizon`` z-scored values of the three indices; metric: RMSE per index on the
z-scored scale, on the test folds. Reference rows on the same windows: a ridge regression
on the raw z-scored 1-D input series, a small 1-D CNN,
and the zero forecast (the input-window mean).

The synthetic data here has 44–56 dates per patch so that every pixel has the 42 needed.
``init_from`` / ``protocol`` / ``poll``: see :mod:`pimc_jax.evaluation.encoders`
(``linear`` = closed-form ridge on frozen features, regulariser chosen on ``val_folds``).
"""

import ml_collections

from pimc_jax import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = defaults.evaluation_config("eval_pastis_forecast", protocol="finetune", arg=arg)
    config.data.synthetic_min_dates = 44
    config.data.synthetic_max_dates = 56
    config.data.max_dates = 64
    config.data.pixels_per_patch = 64
    # Void only: background pixels are fine series to forecast.
    defaults.add_pixel_splits(config, pastis_excluded=(19,), arg=arg)
    config.forecast = ml_collections.ConfigDict(
        dict(
            input_length=32,
            horizon=10,
            indices=("ndvi", "evi", "savi"),
            min_std=1e-3,
            zscore="input",  # input: stats of the 32 inputs (no leakage) | window: all 42
            cnn_baseline=True,
            cnn_learning_rate=1e-3,  # the 1-D CNN reference (finetune steps and batch)
        )
    )
    config.linear = ml_collections.ConfigDict(dict(l2_grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0)))
    if "tiny" in defaults.parse_variants(arg):
        config.data.update(dict(synthetic_min_dates=44, synthetic_max_dates=48, max_dates=48))
        config.linear.l2_grid = (1e-3, 1e-1)
    return config
