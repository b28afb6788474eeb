"""pimc_jax.encode / encode_patch / init_params: shapes, batch independence, errors."""

import dataclasses
import re

import numpy as np
import pytest

import pimc_jax
from pimc_jax.data.synthetic import make_patch
from pimc_jax.encode import encode_patches


@pytest.fixture(scope="module")
def params(tiny_params):
    return tiny_params


@pytest.fixture(scope="module")
def pixels():
    patch = make_patch(0, 0, size=32)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 32, 1000), rng.integers(0, 32, 1000)
    bands = patch.bands[:, rows, cols].transpose(1, 0, 2)  # (N, T, C)
    image = rng.uniform(0, 0.3, (1000, 8, 8, 3)).astype(np.float32)
    return {"bands": bands, "dates": patch.dates, "band_names": patch.band_names, "image": image}


@pytest.mark.parametrize("num", [1, 7, 1000])
def test_encode_returns_finite_unit_embeddings(params, pixels, num):
    batch = {k: (v[:num] if k in ("bands", "image") else v) for k, v in pixels.items()}
    out = pimc_jax.encode(params, batch)
    assert out["rp"].shape == (num, 12) and out["image"].shape == (num, 12)
    assert out["rp_features"].shape == (num, 8) and out["image_features"].shape == (num, 8)
    for key in ("rp", "rp_features", "image", "image_features"):
        assert out[key].dtype == np.float32 and np.all(np.isfinite(out[key]))
    assert out["valid"].dtype == np.bool_ and out["valid"].shape == (num,)
    np.testing.assert_allclose(np.linalg.norm(out["rp"], axis=1), 1.0, rtol=1e-5)


def test_rows_are_embedded_independently_of_the_batch(params, pixels):
    # GroupNorm has no batch statistics and padding rows are dropped: a pixel's embedding
    # must not depend on what else is in the batch.
    batch = {k: (v[:7] if k in ("bands", "image") else v) for k, v in pixels.items()}
    together = pimc_jax.encode(params, batch)
    alone = pimc_jax.encode(
        params, {**batch, "bands": batch["bands"][3:4], "image": batch["image"][3:4]}
    )
    np.testing.assert_allclose(together["rp"][3], alone["rp"][0], atol=1e-5)
    np.testing.assert_allclose(together["image"][3], alone["image"][0], atol=1e-5)


def test_encode_selects_image_bands_by_name(params, pixels):
    image = pixels["image"][:4]
    reordered = image[..., ::-1]  # stored as B2, B3, B4
    direct = pimc_jax.encode(params, {"image": image})["image"]
    named = pimc_jax.encode(params, {"image": reordered, "image_band_names": ("B2", "B3", "B4")})[
        "image"
    ]
    np.testing.assert_allclose(direct, named, atol=1e-6)


def test_encode_patch_gives_dense_embeddings(params):
    patch = make_patch(1, 0, size=12)
    out = pimc_jax.encode_patch(params, patch.bands, patch.dates, patch.band_names)
    assert out["rp"].shape == (12, 12, 12) and out["image"].shape == (12, 12, 12)
    assert np.all(np.isfinite(out["rp"])) and np.all(np.isfinite(out["image"]))


def test_bad_inputs_raise_clear_errors(params, pixels):
    with pytest.raises(ValueError, match=r"\(N, T, C\)"):
        pimc_jax.encode(params, {"bands": pixels["bands"][0], "dates": pixels["dates"]})
    with pytest.raises(ValueError, match="dates"):
        pimc_jax.encode(params, {"bands": pixels["bands"][:2], "band_names": pixels["band_names"]})
    with pytest.raises(ValueError, match="B8"):
        pimc_jax.encode(
            params,
            {
                "bands": pixels["bands"][:2, :, :3],
                "dates": pixels["dates"],
                "band_names": ("B2", "B3", "B4"),
            },
        )
    with pytest.raises(ValueError, match="image"):
        pimc_jax.encode(params, {"image": pixels["image"][:2, :, :, :2]})
    with pytest.raises(TypeError, match=r"^params must be PIMCParams .*got <class 'dict'>$"):
        pimc_jax.encode({"params": {}}, {"image": pixels["image"][:2]})
    with pytest.raises(ValueError, match=r"^batch needs one of \('bands', .*; got keys \['foo'\]$"):
        pimc_jax.encode(params, {"foo": pixels["image"][:2]})


def test_encode_scale_nodata_table_names_and_iso_dates(params, pixels):
    bands, dates = pixels["bands"][:5], pixels["dates"]
    reference = pimc_jax.encode(
        params, {"bands": bands, "dates": dates, "band_names": pixels["band_names"]}
    )
    # Digital numbers with a scale, a no-data fill value, "pastis" and ISO date strings.
    raw = np.round(bands * 10_000).astype(np.int32)
    raw[1] = -9999  # a pixel with no usable date
    iso = [str(np.datetime64("2019-01-01") + int(d)) for d in dates - dates[0]]
    out = pimc_jax.encode(
        params,
        {"bands": raw, "dates": iso, "band_names": "pastis"},
        scale=1e-4,
        nodata=-9999,
    )
    assert tuple(pixels["band_names"]) == pimc_jax.BAND_TABLES["pastis"]
    np.testing.assert_array_equal(out["valid"], [True, False, True, True, True])
    keep = [0, 2, 3, 4]
    np.testing.assert_allclose(out["rp"][keep], reference["rp"][keep], atol=2e-3)
    assert np.all(np.isfinite(out["rp"]))
    # A fill value that is plausible reflectance is a gap only because `nodata` says so.
    filled = np.round(bands * 10_000).astype(np.int32)
    filled[0, :3] = 1234
    assert np.count_nonzero(filled == 1234) == 3 * filled.shape[-1]
    gaps = filled * np.float32(1e-4)
    gaps[0, :3] = np.nan
    named = {"dates": dates, "band_names": "pastis"}
    out = pimc_jax.encode(params, {"bands": filled, **named}, scale=1e-4, nodata=1234)
    expected = pimc_jax.encode(params, {"bands": gaps, **named})
    np.testing.assert_allclose(out["rp"], expected["rp"], atol=1e-5)
    read = pimc_jax.encode(params, {"bands": filled, **named}, scale=1e-4)  # no nodata
    assert np.abs(read["rp"][0] - expected["rp"][0]).max() > 1e-3
    # A float32-max fill value without `nodata` is implausible reflectance: also invalid.
    filled = bands.copy()
    filled[2] = np.finfo(np.float32).max
    out = pimc_jax.encode(params, {"bands": filled, "dates": dates, "band_names": "pastis"})
    assert np.all(np.isfinite(out["rp"])) and not out["valid"][2] and out["valid"][0]


def test_encode_handles_no_pixels(params, pixels):
    out = pimc_jax.encode(
        params,
        {"bands": pixels["bands"][:0], "dates": pixels["dates"], "image": pixels["image"][:0]},
    )
    assert out["rp"].shape == (0, 12) and out["rp_features"].shape == (0, 8)
    assert out["image"].shape == (0, 12) and out["valid"].shape == (0,)
    assert out["rp"].dtype == np.float32 and out["valid"].dtype == np.bool_


def test_encode_patch_accepts_scale_nodata_and_table_name(params):
    patch = make_patch(1, 0, size=8)
    raw = np.round(patch.bands * 10_000).astype(np.float32)
    raw[:, 0, 0] = np.finfo(np.float32).max  # one pixel is all no-data
    out = pimc_jax.encode_patch(params, raw, patch.dates, "pastis", scale=1e-4, nodata=None)
    assert out["valid"].shape == (8, 8) and not out["valid"][0, 0] and out["valid"].sum() == 63
    assert np.all(np.isfinite(out["rp"])) and np.all(np.isfinite(out["image"]))


def test_dates_of_the_wrong_length_raise_a_one_line_value_error(params, pixels):
    with pytest.raises(ValueError, match=r"has \d+ dates but .* T = \d+") as err:
        pimc_jax.encode(params, {"bands": pixels["bands"][:2], "dates": pixels["dates"][:-1]})
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="ISO"):
        pimc_jax.encode(params, {"bands": pixels["bands"][:2], "dates": ["x"] * 30})
    with pytest.raises(ValueError, match="scale"):
        pimc_jax.encode(params, {"bands": pixels["bands"][:2], "dates": pixels["dates"]}, scale=0)


def test_series_bands_are_read_by_name_and_scaled_by_the_models_convention(params, pixels):
    from pimc_jax.models import PIMCParams

    batch = {k: pixels[k][:6] if k == "bands" else pixels[k] for k in ("bands", "dates")}
    batch["band_names"] = pixels["band_names"]
    direct = pimc_jax.encode(params, batch)["rp"]
    order = np.arange(len(pixels["band_names"]))[::-1]
    reordered = pimc_jax.encode(
        params,
        {
            **batch,
            "bands": batch["bands"][..., order],
            "band_names": tuple(np.asarray(pixels["band_names"])[order]),
        },
    )["rp"]
    np.testing.assert_allclose(reordered, direct, atol=1e-5)
    # A model whose raw series were divided by 10 000 (spec.reflectance_scale): its own
    # convention without `scale`, reflectance with scale=1; both are the same plots.
    spec = dataclasses.replace(params.spec, reflectance_scale=10_000.0)
    raw_model = PIMCParams(variables=params.variables, spec=spec)
    own = pimc_jax.encode(raw_model, {**batch, "bands": batch["bands"] * 10_000})["rp"]
    given = pimc_jax.encode(raw_model, batch, scale=1.0)["rp"]
    np.testing.assert_allclose(own, direct, atol=1e-5)
    np.testing.assert_allclose(given, direct, atol=1e-5)


def test_valid_follows_the_models_own_indices(pixels):
    """A pixel is valid when the model's indices are defined on one of its dates: an
    NDVI-only model reads no blue band, so a pixel without one stays valid for it."""
    from tiny_configs import tiny_model_spec

    from pimc_jax.models import EncoderSpec

    tiny = EncoderSpec(stage_sizes=(1,), widths=(8,), stem_width=8, norm_groups=4)
    spec = tiny_model_spec(tiny, indices=("NDVI",), embedding_dim=12, rp_size=16, crop_size=8)
    model = pimc_jax.init_params(spec, 0)
    names = tuple(pixels["band_names"])
    bands = np.array(pixels["bands"][:3], np.float32)
    bands[1, :, names.index("B2")] = np.nan  # no blue band: NDVI still defined
    bands[2, :, names.index("B4")] = np.nan  # no red band: NDVI never defined
    batch = {"bands": bands, "dates": pixels["dates"], "band_names": names}
    assert pimc_jax.encode(model, batch)["valid"].tolist() == [True, True, False]
    # A model of raw series divided by 10 000 reads the same pixels ×10 000 as valid.
    raw = dataclasses.replace(spec, reflectance_scale=10_000.0)
    raw_model = pimc_jax.PIMCParams(variables=model.variables, spec=raw)
    out = pimc_jax.encode(raw_model, {**batch, "bands": bands * 10_000})
    assert out["valid"].tolist() == [True, True, False]


def test_progress_bars_name_what_they_count_and_off_means_off(params, pixels, capsys, monkeypatch):
    from pimc_jax import encode_inputs
    from pimc_jax import progress as progress_lib

    monkeypatch.delenv(progress_lib.ENV_VAR, raising=False)
    patches = [make_patch(1, 0, size=6), make_patch(2, 0, size=6)]
    streamed = list(encode_patches(params, iter(patches), progress=True))  # no len
    err = capsys.readouterr().err
    assert len(streamed) == 2 and "Encoding patches: 0patch [" in err
    assert "Encoding rows" not in err  # one bar over the patches, none inside
    list(encode_patches(params, patches, progress=True))
    assert "| 0/2 [" in capsys.readouterr().err
    # A patch of two blocks of rows (3 rows of 6 pixels each) shows its own bar.
    pimc_jax.encode_patch(params, patches[0], chunk_pixels=18, progress=True)
    err = capsys.readouterr().err
    assert "Encoding rows: " in err and "| 0/2 [" in err, err
    assert re.search(r"(block/s|s/block)\]", err), err
    # progress=False wins over PIMC_JAX_PROGRESS=1, for the bars inside too.
    batch = {**pixels, "bands": pixels["bands"][:3], "image": pixels["image"][:3]}
    monkeypatch.setattr(encode_inputs, "_MAX_CHUNK", 2)  # encode's bars show from two chunks
    monkeypatch.setenv(progress_lib.ENV_VAR, "1")
    wide = make_patch(3, 0, size=129)  # 129² px > PATCH_CHUNK_PIXELS: two blocks of rows
    list(encode_patches(params, [*patches, wide], progress=False))
    pimc_jax.encode(params, batch, progress=False)
    assert "Encoding" not in capsys.readouterr().err
    monkeypatch.delenv(progress_lib.ENV_VAR)
    pimc_jax.encode(params, batch, progress=True)
    err = capsys.readouterr().err
    assert "Encoding series: " in err and "Encoding crops: " in err
