"""pimc_jax.encode / encode_patch with Sentinel-1 views (``s1_rp``, ``s1_image``), against
the towers applied by hand, and ``ModelSpec.s1_multilook``."""

import dataclasses
import importlib
import json

import jax
import numpy as np
import pytest
from tiny_configs import perturbed, tiny_model_spec, tiny_pretrain_config

import pimc_jax
from pimc_jax.checkpoint import CheckpointStore, load_params
from pimc_jax.data.radar import pixel_s1_series
from pimc_jax.data.synthetic import make_patch, make_patches
from pimc_jax.indices import BAND_TABLES, S1_BAND_NAMES, resolve_image_bands
from pimc_jax.models import PIMC, EncoderSpec, ModelSpec
from pimc_jax.preprocessing import normalize_crops, normalize_s1_crops, radar_plots

TINY = EncoderSpec(stage_sizes=(1,), widths=(8,), stem_width=8, norm_groups=4)
S1_FIELDS = dict(
    s1_band_names=S1_BAND_NAMES,
    s1_indices=("vv", "vh", "ratio"),
    s1_image_bands=("VV", "VH", "VV/VH"),
    s1_image_mean=(-12.0, -19.0, 7.0),
    s1_image_std=(3.0, 3.5, 2.0),
    s1_multilook=3,
)
SIZE = 10  # patch side


def _params(views: tuple[str, str]) -> pimc_jax.PIMCParams:
    spec = tiny_model_spec(
        TINY,
        head_hidden_dims=(16,),
        embedding_dim=12,
        rp_size=16,
        crop_size=8,
        views=views,
        **S1_FIELDS,
    )
    return perturbed(pimc_jax.init_params(spec, 0))


@pytest.fixture(scope="module")
def s1_rp_params() -> pimc_jax.PIMCParams:
    return _params(("s1_rp", "s2_image"))


@pytest.fixture(scope="module")
def s1_image_params() -> pimc_jax.PIMCParams:
    return _params(("s2_rp", "s1_image"))


@pytest.fixture(scope="module")
def patch():
    return make_patches(1, seed=3, size=SIZE, min_dates=6, max_dates=9, s1=True)[0]


def _by_hand(params, tower: int, inputs) -> tuple[np.ndarray, np.ndarray]:
    """(features, embeddings) of tower ``tower`` applied to its model inputs directly."""
    method = (PIMC.encode_rp, PIMC.encode_image)[tower]
    features, embeddings = PIMC(params.spec).apply(params.variables, inputs, method=method)
    return np.asarray(features), np.asarray(embeddings)


def _reflect_crop(frame: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    """The ``size`` crop of ``frame`` centred on (row, col), reflect-padded by np.pad."""
    half = size // 2
    padded = np.pad(frame, ((half, half), (half, half), (0, 0)), mode="reflect")
    return padded[row : row + size, col : col + size]


def _nearest_s1_frame(patch) -> np.ndarray:
    """The S1 image nearest the median-composite day (the middle S2 date), by hand."""
    day = np.sort(patch.dates)[(patch.dates.size - 1) // 2]
    nearest = int(np.argmin(np.abs(patch.s1_dates.astype(np.int64) - day)))
    assert abs(int(patch.s1_dates[nearest]) - int(day)) <= 6
    return patch.s1_bands[nearest]  # channels VV, VH, VV/VH = spec.s1_image_bands


def test_encode_s1_series_equals_the_tower_on_radar_plots(s1_rp_params, patch):
    spec = s1_rp_params.spec
    rows, cols = np.array([0, 4, 9, 2, 7]), np.array([0, 5, 9, 8, 1])
    series = pixel_s1_series(patch.s1_bands, rows, cols, patch.s1_band_names, 3)
    series[3] = np.nan  # a pixel without any usable date
    dates = np.broadcast_to(patch.s1_dates.astype(np.float32), series.shape[:2])
    mask = np.ones(series.shape[:2], bool)
    mask[1, ::2] = False
    out = pimc_jax.encode(
        s1_rp_params, {"s1_bands": series, "s1_dates": patch.s1_dates, "s1_mask": mask}
    )
    features, embeddings = _by_hand(s1_rp_params, 0, radar_plots(spec, series, dates, mask))
    np.testing.assert_allclose(out["rp"], embeddings, atol=1e-5)
    np.testing.assert_allclose(out["rp_features"], features, atol=1e-5)
    np.testing.assert_array_equal(out["valid"], [True, True, True, False, True])
    assert set(out) == {"rp", "rp_features", "valid"}
    # Channels in another order, named so; ISO dates: the same embeddings.
    iso = [str(np.datetime64(int(d), "D")) for d in patch.s1_dates]
    names = tuple(reversed(patch.s1_band_names))
    swapped = pimc_jax.encode(
        s1_rp_params,
        {"s1_bands": series[..., ::-1], "s1_dates": iso, "s1_mask": mask, "s1_band_names": names},
    )
    np.testing.assert_allclose(swapped["rp"], out["rp"], atol=1e-6)


def test_encode_s1_image_equals_the_tower_on_normalized_crops(s1_image_params):
    crops = np.random.default_rng(0).uniform(-25, 0, (6, 8, 8, 3)).astype(np.float32)
    crops[2, :3] = np.nan
    out = pimc_jax.encode(s1_image_params, {"s1_image": crops})
    features, embeddings = _by_hand(
        s1_image_params, 1, normalize_s1_crops(s1_image_params.spec, crops)
    )
    np.testing.assert_allclose(out["image"], embeddings, atol=1e-5)
    np.testing.assert_allclose(out["image_features"], features, atol=1e-5)
    assert set(out) == {"image", "image_features", "image_valid"}


def test_encode_patch_reads_both_sensors_bands_by_name(s1_rp_params, s1_image_params, patch):
    # The same patch with its S2 and S1 bands stored in reverse order, names following.
    swapped = dataclasses.replace(
        patch,
        bands=patch.bands[..., ::-1],
        band_names=tuple(reversed(patch.band_names)),
        s1_bands=patch.s1_bands[..., ::-1],
        s1_band_names=tuple(reversed(patch.s1_band_names)),
    )
    assert swapped.s1_band_names != patch.s1_band_names
    for params in (s1_rp_params, s1_image_params):
        want = pimc_jax.encode_patch(params, patch, progress=False)
        got = pimc_jax.encode_patch(params, swapped, progress=False)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], atol=1e-6, err_msg=key)


def test_encode_patch_s1_rp_matches_encode_on_hand_built_pixels(s1_rp_params, patch):
    spec = s1_rp_params.spec
    # Small blocks: several row blocks, and S1 neighbourhoods computed a few at a time.
    out = pimc_jax.encode_patch(s1_rp_params, patch, chunk_pixels=37)
    assert out["rp"].shape == (SIZE, SIZE, 12) and out["image"].shape == (SIZE, SIZE, 12)
    assert out["valid"].shape == (SIZE, SIZE) and out["valid"].all()
    rows, cols = np.array([0, 3, 9, 6]), np.array([0, 7, 9, 2])
    series = pixel_s1_series(patch.s1_bands, rows, cols, patch.s1_band_names, spec.s1_multilook)
    columns = [patch.band_names.index(b) for b in spec.image_bands]
    composite = np.nanmedian(patch.reflectance()[..., columns], axis=0)
    crops = np.stack([_reflect_crop(composite, r, c, 8) for r, c in zip(rows, cols, strict=True)])
    want = pimc_jax.encode(
        s1_rp_params, {"s1_bands": series, "s1_dates": patch.s1_dates, "image": crops}
    )
    np.testing.assert_allclose(out["rp"][rows, cols], want["rp"], atol=1e-5)
    np.testing.assert_allclose(out["image"][rows, cols], want["image"], atol=1e-5)
    # The tower applied by hand on the multilooked series, too.
    dates = np.broadcast_to(patch.s1_dates.astype(np.float32), series.shape[:2])
    plots = radar_plots(spec, series, dates, np.ones(series.shape[:2], bool))
    np.testing.assert_allclose(
        out["rp"][rows, cols], _by_hand(s1_rp_params, 0, plots)[1], atol=1e-5
    )
    _, image_embeddings = _by_hand(s1_rp_params, 1, normalize_crops(spec, crops))
    np.testing.assert_allclose(out["image"][rows, cols], image_embeddings, atol=1e-5)


def test_encode_patch_s1_image_uses_the_s1_date_nearest_the_median_s2_date(s1_image_params, patch):
    spec = s1_image_params.spec
    out = pimc_jax.encode_patch(s1_image_params, patch, chunk_pixels=45)
    assert out["rp"].shape == (SIZE, SIZE, 12) and out["image"].shape == (SIZE, SIZE, 12)
    frame = _nearest_s1_frame(patch)
    rows, cols = np.array([0, 5, 9, 1]), np.array([9, 5, 0, 3])
    crops = np.stack([_reflect_crop(frame, r, c, 8) for r, c in zip(rows, cols, strict=True)])
    series = np.swapaxes(patch.reflectance()[:, rows, cols], 0, 1)
    want = pimc_jax.encode(
        s1_image_params,
        {"bands": series, "dates": patch.dates, "band_names": patch.band_names, "s1_image": crops},
    )
    np.testing.assert_allclose(out["image"][rows, cols], want["image"], atol=1e-5)
    np.testing.assert_allclose(out["rp"][rows, cols], want["rp"], atol=1e-5)
    _, embeddings = _by_hand(s1_image_params, 1, normalize_s1_crops(spec, crops))
    np.testing.assert_allclose(out["image"][rows, cols], embeddings, atol=1e-5)


def test_a_valid_s1_image_tower_runs_densely_and_exactly(patch, monkeypatch):
    valid = dataclasses.replace(TINY, padding="valid")
    spec = dataclasses.replace(
        _params(("s2_rp", "s1_image")).spec, image_encoder=valid, crop_size=9
    )
    params = perturbed(pimc_jax.init_params(spec, 0))
    frame = _nearest_s1_frame(patch)
    rows, cols = np.array([0, 5, 9, 1]), np.array([9, 5, 0, 3])
    crops = np.stack([_reflect_crop(frame, r, c, 9) for r, c in zip(rows, cols, strict=True)])
    _, want = _by_hand(params, 1, normalize_s1_crops(spec, crops))

    def no_crops(*args, **kwargs):
        raise AssertionError("crops cut for a view the dense pass computes")

    monkeypatch.setattr(importlib.import_module("pimc_jax.encode"), "extract_crops", no_crops)
    out = pimc_jax.encode_patch(params, patch, chunk_pixels=45, progress=False)
    np.testing.assert_allclose(out["image"][rows, cols], want, atol=1e-4)


def _one_line_error(match: str, fn, *args, **kwargs) -> None:
    with pytest.raises(ValueError, match=match) as error:
        fn(*args, **kwargs)
    assert "\n" not in str(error.value)


def test_s1_inputs_errors_are_one_line(tiny_params, s1_rp_params, s1_image_params, patch):
    series = pixel_s1_series(patch.s1_bands, np.arange(3), np.arange(3), S1_BAND_NAMES, 1)
    dates = patch.s1_dates
    encode = pimc_jax.encode
    # Keys feeding views the model does not have.
    _one_line_error(r"s1_bands.*s1_rp.*s2_rp", encode, tiny_params, {"s1_bands": series})
    _one_line_error(r"'bands'.*s2_rp.*s1_rp", encode, s1_rp_params, {"bands": series})
    _one_line_error(r"s1_image.*s1_image", encode, s1_rp_params, {"s1_image": series})
    crops = np.zeros((2, 8, 8, 3), np.float32)  # "image" feeds two views
    _one_line_error(
        r"batch\['image'\] feeds the s2_image or s2_image_aug view, but this model's towers "
        r"read model.views=\('s2_rp', 's1_image'\)",
        encode,
        s1_image_params,
        {"image": crops},
    )
    # Shapes, channel counts, names, dtypes, dates.
    _one_line_error(r"\(N, T1, C1\)", encode, s1_rp_params, {"s1_bands": series[0]})
    _one_line_error(
        "3 channels but s1_band_names has 2",
        encode,
        s1_rp_params,
        {"s1_bands": series, "s1_dates": dates, "s1_band_names": ("VV", "VH")},
    )
    _one_line_error(
        "needs channels",
        encode,
        s1_rp_params,
        {"s1_bands": series[..., :1], "s1_dates": dates, "s1_band_names": ("VV",)},
    )
    _one_line_error(
        "unknown Sentinel-1",
        encode,
        s1_rp_params,
        {"s1_bands": series, "s1_dates": dates, "s1_band_names": ("VV", "VH", "HH")},
    )
    _one_line_error(
        "numeric", encode, s1_rp_params, {"s1_bands": series.astype(str), "s1_dates": dates}
    )
    _one_line_error("s1_dates", encode, s1_rp_params, {"s1_bands": series})
    _one_line_error("s1_dates", encode, s1_rp_params, {"s1_bands": series, "s1_dates": dates[:-1]})
    _one_line_error(
        "s1_mask",
        encode,
        s1_rp_params,
        {"s1_bands": series, "s1_dates": dates, "s1_mask": np.ones((3, 2), bool)},
    )
    crops = np.zeros((2, 8, 8, 3), np.float32)
    _one_line_error(r"\(N, k, k, C\)", encode, s1_image_params, {"s1_image": crops[0]})
    _one_line_error("2 channels", encode, s1_image_params, {"s1_image": crops[..., :2]})
    _one_line_error("numeric", encode, s1_image_params, {"s1_image": crops.astype(str)})
    # encode_patch: arrays, a patch without S1, mode="fast", no S1 date within the gap.
    encode_patch = pimc_jax.encode_patch
    arrays = (patch.bands, patch.dates, patch.band_names)
    _one_line_error("pass a Patch with s1_bands", encode_patch, s1_rp_params, *arrays)
    no_s1 = make_patch(0, 0, size=6, min_dates=4, max_dates=5)
    _one_line_error("no Sentinel-1", encode_patch, s1_image_params, no_s1)
    _one_line_error("mode='fast'", encode_patch, s1_image_params, patch, mode="fast")
    day = np.sort(patch.dates)[(patch.dates.size - 1) // 2]
    gap = np.abs(patch.s1_dates.astype(np.int64) - day).min()
    assert gap > 0  # the patch has no S1 acquisition on the S2 image day itself
    _one_line_error(
        "s1_max_gap_days", encode_patch, s1_image_params, patch, s1_max_gap_days=gap - 0.5
    )


def test_s1_multilook_in_specs_configs_and_checkpoints(s1_rp_params, tmp_path):
    assert ModelSpec().s1_multilook == pimc_jax.defaults.data_config().s1_multilook
    # A spec saved before the field existed holds single-pixel series.
    saved = s1_rp_params.spec.to_dict()
    saved.pop("s1_multilook")
    assert ModelSpec.from_dict(saved).s1_multilook == 1
    with pytest.raises(ValueError, match="s1_multilook must be odd"):
        ModelSpec(s1_multilook=4)
    # From a config: data.s1_multilook; a config without the key: 1.
    config = tiny_pretrain_config(**{"data.s1_multilook": 7})
    bands = len(resolve_image_bands(config.data.image_bands, BAND_TABLES["pastis"]))
    facts = dict(band_names=BAND_TABLES["pastis"], image_mean=(0.0,) * bands)
    facts["image_std"] = (1.0,) * bands
    assert ModelSpec.from_config(config, **facts).s1_multilook == 7
    del config.data["s1_multilook"]
    assert ModelSpec.from_config(config, **facts).s1_multilook == 1
    # A checkpoint round trip keeps the field; one whose meta lacks it loads with 1.
    store = CheckpointStore(tmp_path)
    variables = jax.device_get(s1_rp_params.variables)
    store.save(1, variables, {"count": np.zeros((), np.int32)}, s1_rp_params.spec, {})
    store.wait()
    store.close()
    assert load_params(tmp_path).spec == s1_rp_params.spec
    meta_file = tmp_path / "checkpoints" / "1" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    del meta["spec"]["s1_multilook"]
    meta_file.write_text(json.dumps(meta))
    loaded = load_params(tmp_path / "checkpoints" / "1")
    assert loaded.spec.s1_multilook == 1
    assert loaded.spec.views == ("s1_rp", "s2_image")


def test_valid_follows_the_models_own_radar_series_and_channel_order():
    """A model of VH alone, its channels stored as (VH, VV): a pixel whose VV is missing at
    every date is valid (its VH is whole) and embeds as the tower on its plots; a pixel
    whose VH is missing is not."""
    fields = dict(
        S1_FIELDS,
        s1_band_names=("VH", "VV"),
        s1_indices=("vh",),
        s1_image_bands=("VH", "VV"),
        s1_image_mean=(-19.0, -12.0),
        s1_image_std=(3.5, 3.0),
    )
    spec = tiny_model_spec(
        TINY, head_hidden_dims=(16,), embedding_dim=12, rp_size=8, crop_size=8,
        views=("s1_rp", "s2_image"), **fields,
    )  # fmt: skip
    params = perturbed(pimc_jax.init_params(spec, 0))
    rng = np.random.default_rng(1)
    t = 7
    series = np.stack(
        [rng.uniform(-24, -16, (3, t)), rng.uniform(-15, -8, (3, t))], axis=-1
    ).astype(np.float32)  # (VH, VV)
    series[1, :, 1] = np.nan  # no VV at all: still valid for a VH model
    series[2, :, 0] = np.nan  # no VH at all: nothing to embed
    dates = np.arange(t, dtype=np.float32) * 12.0
    out = pimc_jax.encode(params, {"s1_bands": series, "s1_dates": dates})
    np.testing.assert_array_equal(out["valid"], [True, True, False])
    mask = np.ones((3, t), bool)
    plots = radar_plots(spec, series, np.broadcast_to(dates, (3, t)), mask)
    _, embeddings = _by_hand(params, 0, plots)
    np.testing.assert_allclose(out["rp"][:2], embeddings[:2], atol=1e-5)


def test_the_radar_bar_names_what_it_counts(s1_rp_params, patch, capsys, monkeypatch):
    from pimc_jax import encode_inputs
    from pimc_jax import progress as progress_lib

    monkeypatch.delenv(progress_lib.ENV_VAR, raising=False)
    monkeypatch.setattr(encode_inputs, "_MAX_CHUNK", 2)  # bars show from two chunks on
    series = pixel_s1_series(patch.s1_bands, np.arange(3), np.arange(3), S1_BAND_NAMES, 1)
    batch = {"s1_bands": series, "s1_dates": patch.s1_dates}
    pimc_jax.encode(s1_rp_params, batch, progress=True)
    assert "Encoding S1 series: " in capsys.readouterr().err
