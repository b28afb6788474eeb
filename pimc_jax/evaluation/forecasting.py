"""Pixel index forecasting with the recurrence-plot encoder (``eval_pastis_forecast``).

Windows (:func:`forecast_windows`): for each pixel, NDVI/EVI/SAVI
(:func:`pimc_jax.indices.vegetation_indices`) are computed from the raw bands; only
*valid* observations count (a real acquisition whose indices are all valid: no NaN band,
no near-zero denominator). Pixels with fewer than ``input_length + horizon`` valid
observations (32 + 10 by default) are skipped. The first ``input_length`` valid
observations are the input, the next ``horizon`` the target. Each index series is
z-scored with the mean and standard deviation of its own input window (the std floored
at ``forecast.min_std``), so no statistic of the targets leaks into the inputs
(``forecast.zscore="window"`` uses the whole 42-observation window instead); RMSE is
reported on that z-scored scale, per index. Input-window z-scores are heavy-tailed: a
pixel flat over its input (bare soil, a crop sown late) that greens up afterwards gets
large target values, which dominate the RMSE.

Models, all scored on the same test windows:

* ``pimc``: the recurrence plot of the input observations (raw bands on the input dates →
  :func:`pimc_jax.preprocessing.series_to_plots`) → RP backbone → linear head predicting
  ``horizon × K`` values; ``protocol="linear"`` fits the head by ridge on frozen
  features, ``"finetune"`` trains backbone and head (MSE, AdamW).
* ``ridge_1d``: ridge regression on the raw z-scored 1-D input series (``input_length × K``
  values) — the 1-D reference for the 2-D (RP) model.
* ``cnn_1d`` (``forecast.cnn_baseline``): a small 1-D CNN (:class:`SeriesCNN`) on the same
  input series, trained like fine-tuning but at ``forecast.cnn_learning_rate``.
* ``zero``: predicts 0, i.e. the input window's mean.

Data splits: the labelled-pixel splits of :mod:`pimc_jax.evaluation.pixels` (folds, or a
seeded split for ``data.name="npz"``; labels are not needed).

The results also hold ``forecast_examples``: :data:`NUM_EXAMPLES` test windows evenly
spread over the test split, with every model's forecast of them, which the evaluation
draws as ``forecast_examples.png`` (:mod:`pimc_jax.evaluation.figures`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pimc_jax.evaluation.encoders import random_encoder
from pimc_jax.evaluation.finetune import finetune_settings, train_supervised
from pimc_jax.evaluation.pixels import load_pixel_splits, series_features, series_inputs
from pimc_jax.evaluation.probes import ridge_probe
from pimc_jax.evaluation.scores import rmse
from pimc_jax.evaluation.towers import plot_tower, predict, tower_forward, tower_params
from pimc_jax.indices import vegetation_indices
from pimc_jax.models import PIMCParams

ZSCORE_MODES: tuple[str, ...] = ("input", "window")
# Test windows kept, with every model's forecast, as ``forecast_examples`` in the results.
NUM_EXAMPLES = 4


def forecast_windows(
    bands: np.ndarray,
    dates: np.ndarray,
    mask: np.ndarray,
    band_names: Sequence[str],
    *,
    indices: Sequence[str] = ("ndvi", "evi", "savi"),
    input_length: int = 32,
    horizon: int = 10,
    min_std: float = 1e-3,
    zscore: str = "input",
) -> dict[str, np.ndarray]:
    """Input/target windows of z-scored index series (module docstring).

    Args:
      bands: ``(N, T, C)`` reflectance (NaN = no-data).
      dates: ``(N, T)`` days.
      mask: ``(N, T)`` bool, True = real acquisition.
      band_names: names of the ``C`` bands.
      zscore: ``"input"`` z-scores each index series with the mean/std of its
        ``input_length`` input observations (no target statistics leak into the
        inputs); ``"window"`` with those of all ``input_length + horizon`` observations
        (what "the pixel's z-scored series" may mean in the paper; it leaks the target
        window's level and spread).

    Returns:
      dict over the ``M`` kept pixels: ``bands`` ``(M, L, C)`` float32 and ``dates``
      ``(M, L)`` float32 of the ``L = input_length`` input observations, ``mask`` ``(M, L)``
      all True, ``inputs`` ``(M, L, K)`` and ``targets`` ``(M, horizon, K)`` float32
      z-scored index values, ``mean``/``std`` ``(M, K)`` the z-score statistics,
      ``pixel`` ``(M,)`` int64 rows of the kept pixels in the input.
    """
    bands = np.asarray(bands, np.float32)
    dates = np.asarray(dates, np.float32)
    mask = np.asarray(mask, bool)
    chex.assert_rank(bands, 3)
    chex.assert_shape([dates, mask], bands.shape[:2])
    if zscore not in ZSCORE_MODES:
        raise ValueError(f"zscore must be one of {ZSCORE_MODES}, got {zscore!r}")
    if input_length < 2 or horizon < 1:
        raise ValueError(f"need input_length >= 2 and horizon >= 1, got {input_length}, {horizon}")
    values, index_ok = vegetation_indices(
        bands, tuple(band_names), tuple(indices), return_mask=True
    )
    values, index_ok = np.asarray(values), np.asarray(index_ok)
    valid = mask & index_ok & np.isfinite(dates)
    length = input_length + horizon
    pixel = np.flatnonzero(valid.sum(axis=1) >= length)
    # Positions of the first `length` valid observations, in date order.
    order = np.argsort(~valid[pixel], axis=1, kind="stable")[:, :length]
    series = np.take_along_axis(values[pixel], order[..., None], axis=1).astype(np.float64)
    reference = series[:, :input_length] if zscore == "input" else series
    mean = reference.mean(axis=1)
    std = np.maximum(reference.std(axis=1), min_std)
    z = (series - mean[:, None]) / std[:, None]
    first = order[:, :input_length]
    return {
        "bands": np.take_along_axis(bands[pixel], first[..., None], axis=1),
        "dates": np.take_along_axis(dates[pixel], first, axis=1),
        "mask": np.ones(first.shape, bool),
        "inputs": z[:, :input_length].astype(np.float32),
        "targets": z[:, input_length:].astype(np.float32),
        "mean": mean.astype(np.float32),
        "std": std.astype(np.float32),
        "pixel": pixel.astype(np.int64),
    }


class SeriesCNN(nn.Module):
    """1-D CNN forecaster: two 5-tap convolutions over time, average pooling, a dense layer.

    ``(B, L, K)`` z-scored inputs → ``(B, num_outputs)``. The pooling keeps the temporal
    layout at a coarser step while cutting the dense layer's size: on a few thousand
    windows an unpooled flatten overfits below the zero forecast. Series shorter than
    ``pool`` are pooled over their whole length.
    """

    num_outputs: int
    width: int = 16
    pool: int = 4

    @nn.compact
    def __call__(self, series: jax.Array) -> jax.Array:
        chex.assert_rank(series, 3)
        x = nn.relu(nn.Conv(self.width, (5,))(series))
        x = nn.relu(nn.Conv(self.width, (5,))(x))
        pool = min(self.pool, series.shape[1])
        x = nn.avg_pool(x, (pool,), (pool,))
        return nn.Dense(self.num_outputs)(x.reshape(x.shape[0], -1))


def _per_index(values: np.ndarray, names: Sequence[str], prefix: str) -> dict[str, float]:
    out = {f"{prefix}rmse_{name}": float(v) for name, v in zip(names, values, strict=True)}
    out[f"{prefix}rmse_mean"] = float(np.mean(values))
    return out


class Forecasting:
    """The ``eval_pastis_forecast`` evaluator: windows and 1-D baselines once, then per encoder."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        forecast = config.forecast
        self.indices = tuple(str(name).lower() for name in forecast.indices)
        self.splits = load_pixel_splits(config, require_labels=False)
        self.windows = []
        for name, split in self.splits.items():
            windows = forecast_windows(
                split["bands"],
                split["dates"],
                split["mask"],
                self.splits.band_names,
                indices=self.indices,
                input_length=forecast.input_length,
                horizon=forecast.horizon,
                min_std=forecast.min_std,
                zscore=forecast.get("zscore", "input"),
            )
            if name != "val" and windows["targets"].shape[0] == 0:
                raise ValueError(
                    f"no {name} pixel has {forecast.input_length + forecast.horizon} valid "
                    "dates; use data with more dates (e.g. data.synthetic_min_dates=44)"
                )
            self.windows.append(windows)
        self._baselines: dict[str, Any] | None = None
        # Test-split forecasts of the baselines, (M, horizon, K) by model.
        self._baseline_predictions: dict[str, np.ndarray] = {}

    def random_params(self) -> PIMCParams:
        s = self.splits
        return random_encoder(
            self.config,
            s.band_names,
            s.image_mean,
            s.image_std,
            series_length=s.series_length(),
            **s.s1_facts,
        )

    def _flat_targets(self, windows: dict[str, np.ndarray]) -> np.ndarray:
        return windows["targets"].reshape(windows["targets"].shape[0], -1)

    def _shape_predictions(self, predictions: np.ndarray) -> np.ndarray:
        return predictions.reshape(predictions.shape[0], self.config.forecast.horizon, -1)

    def baselines(self) -> dict[str, np.ndarray]:
        """Test-split RMSE per index of the encoder-free references (computed once)."""
        if self._baselines is not None:
            return self._baselines
        train, val, test = self.windows
        flat = lambda w: w["inputs"].reshape(w["inputs"].shape[0], -1)
        ridge = ridge_probe(
            (flat(train), self._flat_targets(train)),
            (flat(val), self._flat_targets(val)),
            flat(test),
            l2_grid=tuple(self.config.linear.l2_grid),
        )
        forecasts = {
            "ridge_1d": self._shape_predictions(ridge["test_predictions"]),
            "zero": np.zeros_like(test["targets"]),
        }
        if self.config.forecast.get("cnn_baseline", False):
            model = SeriesCNN(num_outputs=self._flat_targets(train).shape[1])
            forward = lambda params, batch: model.apply(params, batch["inputs"])
            params = model.init(jax.random.key(self.config.seed), jnp.asarray(train["inputs"][:1]))
            params = train_supervised(
                forward,
                params,
                {"inputs": train["inputs"]},
                self._flat_targets(train),
                loss="mse",
                name="cnn_1d",
                **{
                    **finetune_settings(self.config),
                    "learning_rate": self.config.forecast.cnn_learning_rate,
                },
            )
            predictions = predict(forward, params, {"inputs": test["inputs"]})
            forecasts["cnn_1d"] = self._shape_predictions(predictions)
        self._baseline_predictions = forecasts
        self._baselines = {
            model: rmse(values, test["targets"]) for model, values in forecasts.items()
        }
        return self._baselines

    def examples(self, forecasts: dict[str, np.ndarray]) -> dict[str, Any]:
        """``forecast_examples`` of the results: :data:`NUM_EXAMPLES` test windows.

        Args:
          forecasts: model name → ``(M, horizon, K)`` forecasts of the ``M`` test windows.

        Returns:
          ``indices`` (``K`` names), ``rows`` (``E`` test-window numbers, evenly spread),
          ``inputs`` ``(E, L, K)``, ``targets`` ``(E, horizon, K)`` and ``predictions``
          (model → ``(E, horizon, K)``), as nested lists for ``results.json``.
        """
        test = self.windows[2]
        count = test["targets"].shape[0]
        rows = np.unique(np.linspace(0, count - 1, min(NUM_EXAMPLES, count)).round())
        rows = rows.astype(np.int64)
        return {
            "indices": list(self.indices),
            "rows": rows.tolist(),
            "inputs": test["inputs"][rows].tolist(),
            "targets": test["targets"][rows].tolist(),
            "predictions": {
                model: np.asarray(values, np.float32)[rows].tolist()
                for model, values in forecasts.items()
            },
        }

    def run(self, params: PIMCParams) -> dict[str, Any]:
        config = self.config
        train, val, test = self.windows
        # The windows are Sentinel-2 series: the encoder's s2_rp tower reads them.
        tower = plot_tower(params.spec, "s2")
        if config.protocol == "linear":
            train_x = series_features(params, train, self.splits.band_names, tower)
            val_x = (
                series_features(params, val, self.splits.band_names, tower)
                if val["targets"].size
                else np.zeros((0, train_x.shape[1]))
            )
            probe = ridge_probe(
                (train_x, self._flat_targets(train)),
                (val_x, self._flat_targets(val)),
                series_features(params, test, self.splits.band_names, tower),
                l2_grid=tuple(config.linear.l2_grid),
            )
            predictions = probe["test_predictions"]
            extra = {"linear_l2": probe["l2"]}
        else:
            forward = tower_forward(params.spec, tower, self.splits.band_names)
            trained = train_supervised(
                forward,
                tower_params(params, tower, self._flat_targets(train).shape[1]),
                series_inputs(train),
                self._flat_targets(train),
                loss="mse",
                tower=tower,
                **finetune_settings(config),
            )
            predictions = predict(forward, trained, series_inputs(test))
            extra = {}
        forecast = self._shape_predictions(np.asarray(predictions))
        pimc = rmse(forecast, test["targets"])
        table = {"pimc": pimc, **self.baselines()}
        metrics = _per_index(pimc, self.indices, "")
        for model, values in table.items():
            if model != "pimc":
                metrics.update(_per_index(values, self.indices, f"{model}_"))
        metrics.update(extra)
        sizes = {
            f"num_{name}": int(w["targets"].shape[0])
            for name, w in zip(("train", "val", "test"), self.windows, strict=True)
        }
        return {
            "metrics": metrics,
            "rmse_by_model": {
                model: {
                    **{n: float(v) for n, v in zip(self.indices, values, strict=True)},
                    "mean": float(np.mean(values)),
                }
                for model, values in table.items()
            },
            "data": {"name": config.data.name, **sizes},
            "forecast_examples": self.examples({"pimc": forecast, **self._baseline_predictions}),
        }
