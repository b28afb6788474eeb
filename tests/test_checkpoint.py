"""Checkpoint integrity: corrupt steps are detected, reported, kept, and skipped."""

import json
import logging
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from tiny_configs import tiny_pretrain_config

from pimc_jax import launcher
from pimc_jax.checkpoint import CheckpointStore, load_params, read_meta


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """One 4-step pre-training (checkpoints at steps 2 and 4) and step 2's params."""
    workdir = tmp_path_factory.mktemp("pretrained") / "run"
    launcher.run(tiny_pretrain_config(total_steps=4), str(workdir))
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]
    step2 = _leaves(load_params(workdir / "checkpoints" / "2").variables)
    step4 = _leaves(load_params(workdir / "checkpoints" / "4").variables)
    return workdir, step2, step4


@pytest.fixture
def workdir(pretrained, tmp_path):
    """A private copy of the pre-trained workdir."""
    return Path(shutil.copytree(pretrained[0], tmp_path / "run"))


def _leaves(tree):
    return [np.array(x) for x in jax.tree.leaves(tree)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _params_data_file(step_dir: Path) -> Path:
    """The largest data file of the params item's OCDBT database (the one reads go through)."""
    files = [p for p in (step_dir / "params" / "d").iterdir() if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


def _truncate(step_dir: Path) -> None:
    path = _params_data_file(step_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _delete(step_dir: Path) -> None:
    _params_data_file(step_dir).unlink()


def _empty(step_dir: Path) -> None:
    for child in step_dir.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _garbage_meta(step_dir: Path) -> None:
    (step_dir / "meta" / "metadata").write_bytes(b"\x00{not json")


def _random_bytes(step_dir: Path) -> None:
    path = _params_data_file(step_dir)
    data = bytearray(path.read_bytes())
    offset = len(data) // 2
    data[offset : offset + 64] = np.random.default_rng(0).bytes(64)
    path.write_bytes(bytes(data))


def _wrong_digest(step_dir: Path) -> None:
    """Arrays intact but one recorded digest wrong: only the digest check can notice."""
    meta_file = step_dir / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    key = sorted(meta["digests"]["params"])[0]
    meta["digests"]["params"][key] = "0" * 64
    meta_file.write_text(json.dumps(meta))


CORRUPTIONS = {
    "truncated": _truncate,
    "deleted": _delete,
    "emptied": _empty,
    "garbage_meta": _garbage_meta,
    "random_bytes": _random_bytes,
    "wrong_digest": _wrong_digest,
}


def _snapshot(step_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(step_dir)): p.read_bytes() for p in step_dir.rglob("*") if p.is_file()
    }


def _warnings_naming(caplog, step_dir: Path) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and str(step_dir) in r.getMessage()
    ]


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corrupt_latest_step_falls_back_to_previous(pretrained, workdir, corruption, caplog):
    _, step2, _ = pretrained
    step_dir = workdir / "checkpoints" / "4"
    CORRUPTIONS[corruption](step_dir)
    before = _snapshot(step_dir)

    caplog.set_level(logging.INFO)
    loaded = load_params(workdir)
    _assert_same(_leaves(loaded.variables), step2)
    assert read_meta(workdir)["step"] == 2
    warnings = _warnings_naming(caplog, step_dir)
    assert warnings and all("\n" not in w for w in warnings)
    assert _snapshot(step_dir) == before and step_dir.is_dir()
    if corruption == "wrong_digest":
        assert any("digest mismatch" in w for w in warnings)

    # Pointing at the bad step itself is an error naming it, not a substitute.
    with pytest.raises(ValueError, match=f"{step_dir}.*could not be restored") as error:
        load_params(step_dir)
    assert "\n" not in str(error.value)

    # Resume skips step 4 (moved aside, kept as it was), continues from step 2 and finishes;
    # the metrics of steps 3 and 4 trained again replace the earlier ones.
    caplog.clear()
    launcher.run(tiny_pretrain_config(total_steps=6), str(workdir))
    assert _warnings_naming(caplog, step_dir)
    resumed = [r.getMessage() for r in caplog.records if "Resumed from" in r.getMessage()]
    assert resumed == [f"Resumed from {workdir.absolute() / 'checkpoints' / '2'} at step 2"]
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert CheckpointStore(workdir).latest_step() == 6
    (aside,) = step_dir.parent.glob("4.corrupt-*")
    assert _snapshot(aside) == before
    assert read_meta(workdir)["step"] == 6


def test_random_bytes_in_params_are_noticed(pretrained, workdir, caplog):
    """The reported bug: overwritten bytes used to load silently as changed values."""
    _, step2, _ = pretrained
    _random_bytes(workdir / "checkpoints" / "4")
    with pytest.raises(ValueError, match="checkpoints/4"):
        load_params(workdir / "checkpoints" / "4")
    _assert_same(_leaves(load_params(workdir).variables), step2)


def test_no_good_step_left_is_one_error_naming_the_directory(workdir):
    for step in ("2", "4"):
        _truncate(workdir / "checkpoints" / step)
    with pytest.raises(ValueError, match="No checkpoint under .*checkpoints could be restored"):
        load_params(workdir)
    with pytest.raises(ValueError, match="could be restored"):
        CheckpointStore(workdir).latest_step()
    assert (workdir / "checkpoints" / "2").is_dir() and (workdir / "checkpoints" / "4").is_dir()


def test_checkpoints_without_digests_still_load(pretrained, workdir):
    _, _, step4 = pretrained
    meta_file = workdir / "checkpoints" / "4" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    assert set(meta["digests"]) == {"params", "opt_state"}
    del meta["digests"]
    meta_file.write_text(json.dumps(meta))
    _assert_same(_leaves(load_params(workdir).variables), step4)
    assert "digests" not in read_meta(workdir)
    assert CheckpointStore(workdir).latest_step() == 4
