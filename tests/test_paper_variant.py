"""The ``paper`` config variant holds the paper's plot representation, key by key, as the
system spec states it (§1–§2): NDVI, EVI and SAVI in that order, each one unthresholded,
unnormalised ``|x_i − x_j|`` recurrence plot without time-delay embedding, stacked as the
three channels of an ``S × S × 3`` input; and a model built from it sees exactly those plots."""

from __future__ import annotations

import numpy as np
import pytest
from pyts.image import RecurrencePlot
from tiny_configs import ROOT, load_config

from pimc_jax.models import ModelSpec
from pimc_jax.preprocessing import view_inputs

# Every shipped config taking the variants (the same ``model`` block, any task).
CONFIGS = sorted(
    path.stem
    for path in (ROOT / "configs").glob("*.py")
    if "model" in load_config(path.stem)  # configs without a model block take no variant
)

# What the spec says the paper's representation is, written out here rather than read
# from the package.
PAPER_PLOTS = {
    "indices": ("ndvi", "evi", "savi"),
    "rp_channels": ("distance",),
    "rp_threshold": None,
    "rp_normalize": False,
    "rp_dimension": 1,
    "rp_time_delay": 1,
    # Resampled over the pixel's own (counted) dates.
    "rp_span": "valid",
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("variants", ["paper", "paper,tiny"])
def test_paper_variant_sets_the_papers_plots_key_by_key(name, variants):
    model = load_config(f"{name}:{variants}").model
    for key, value in PAPER_PLOTS.items():
        got = model[key]
        got = tuple(got) if isinstance(got, (list, tuple)) else got
        assert got == value, (name, key, got)
    # No extra inputs beside the plots: the plot tower's features are its pooled maps only.
    assert model.rp_encoder.input_means is False, name
    assert model.image_encoder.input_means is False, name


def test_default_differs_from_the_paper_only_where_documented():
    default, paper = load_config("pretrain").model, load_config("pretrain:paper").model
    changed = {
        key
        for key in default.keys()
        if key not in ("rp_encoder", "image_encoder") and default[key] != paper[key]
    }
    # rp_size: the default sizes the plots from the data (0), the paper variant keeps 12.
    assert changed == {"indices", "rp_channels", "rp_span", "rp_size"}
    assert (default.rp_size, paper.rp_size) == (0, 12)
    assert default.rp_encoder.to_dict() == dict(paper.rp_encoder.to_dict(), input_means=True)
    assert default.image_encoder.to_dict() == paper.image_encoder.to_dict()


def test_a_paper_model_sees_three_distance_plots_of_ndvi_evi_savi():
    config = load_config("pretrain:paper,tiny")
    names = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    spec = ModelSpec.from_config(
        config, band_names=names, image_mean=(0.0,) * 4, image_std=(1.0,) * 4
    )
    size = config.model.rp_size
    assert spec.view_input_shape("s2_rp") == (size, size, 3)

    rng = np.random.default_rng(0)
    num_dates = 11
    dates = np.sort(rng.uniform(0, 365, (2, num_dates))).astype(np.float32)
    bands = rng.uniform(0.02, 0.3, (2, num_dates, len(names))).astype(np.float32)
    bands[..., 6] += 0.3 * np.sin(dates / 60.0)  # B8
    bands[..., 0] *= 0.3  # B2: blue well below red, as over vegetation (EVI stays moderate)
    mask = np.ones((2, num_dates), bool)
    mask[1, [0, 5]] = False  # an uncounted first date: the span starts at the second
    got = np.asarray(
        view_inputs(spec, "s2_rp", {"bands": bands, "dates": dates, "mask": mask}, names)
    )

    nir, red, blue = bands[..., 6], bands[..., 2], bands[..., 0]
    series = {
        "ndvi": (nir - red) / (nir + red),
        "evi": 2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1),
        "savi": 1.5 * (nir - red) / (nir + red + 0.5),
    }
    for pixel in range(2):
        keep = mask[pixel]
        days = dates[pixel, keep].astype(np.float64)
        grid = np.linspace(days[0], days[-1], size)
        for channel, index in enumerate(("ndvi", "evi", "savi")):
            x = np.interp(grid, days, series[index][pixel, keep].astype(np.float64))
            want = RecurrencePlot(threshold=None).fit_transform(x[None])[0]
            np.testing.assert_allclose(got[pixel, ..., channel], want, rtol=1e-5, atol=1e-5)
