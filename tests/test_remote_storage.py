"""``gs://`` workdirs and data directories, end to end against a real local GCS server.

The server is ``gcp-storage-emulator`` (``tests/gcs_emulator.py``), started once for the
module as a subprocess on a free port, in memory, with one bucket. The library reaches it
only through the standard variables (``STORAGE_EMULATOR_HOST`` for gcsfs,
``TENSORSTORE_GCS_HTTP_URL`` for TensorStore, which writes Orbax's arrays), set in this
process and inherited by every ``python launch.py`` it runs.

References: the same commands on a local workdir (the trajectory, parameters, metrics and
scores a gs:// run must reproduce), objects read back with gcsfs directly rather than
through pimc_jax, TensorBoard's own event reader, and the local writers' bytes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from gcs_emulator import BUCKET, client_env, free_port
from tiny_configs import ROOT, one_cpu_env

from pimc_jax import metrics, storage
from pimc_jax.checkpoint import checkpoint_steps, load_params, read_meta
from pimc_jax.evaluation.results import results_markdown, write_results

pytest.importorskip(
    "gcp_storage_emulator", reason="the gs:// tests need gcp-storage-emulator (test extra)"
)
# gcsfs itself is imported by the fixture, after it has set the emulator's variables.
if importlib.util.find_spec("gcsfs") is None:
    pytest.skip("the gs:// tests need gcsfs (test extra)", allow_module_level=True)

EMULATOR = Path(__file__).resolve().parent / "gcs_emulator.py"
RUN = f"gs://{BUCKET}/run"
BATCH = "--config.global_batch_size=16"
LINEAR = ("--config.linear.steps=30", "--config.linear.l2_grid=(0.001, 0.1)")
# Every metric of metrics.jsonl that does not depend on wall time.
TRAJECTORY = (
    "loss",
    "rp_to_image_top1",
    "image_to_rp_top1",
    "temperature",
    "grad_norm",
    "param_norm",
    "learning_rate",
)


# --------------------------------------------------------------------------------------
# The server and the commands.


def _wait_until_serving(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    url = f"http://localhost:{port}/storage/v1/b/{BUCKET}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the GCS emulator exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the GCS emulator did not start: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def gcs(tmp_path_factory) -> Iterator[Any]:
    """The emulator, serving for the module; yields a gcsfs filesystem on it."""
    port = free_port()
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(EMULATOR), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(port, process, log)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in client_env(port).items():
                patch.setenv(key, value)
            # fsspec reads FSSPEC_GCS_TOKEN when it is first imported: set it here too.
            import fsspec
            import gcsfs

            patch.setitem(fsspec.config.conf, "gcs", {"token": "anon"})
            # This test-side client never answers from a stale listing cache.
            yield gcsfs.GCSFileSystem(
                token="anon", skip_instance_cache=True, use_listings_cache=False
            )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def launch(
    config: str, workdir: str | Path, *flags: str, **env: str
) -> subprocess.CompletedProcess:
    """``python launch.py --config=configs/<config>.py FLAGS --workdir=WORKDIR`` on one CPU
    device (``config`` = ``name[:arg]``), with this process's environment plus ``env``."""
    environment = one_cpu_env(**env)
    name, colon, arg = config.partition(":")
    command = [sys.executable, "launch.py", f"--config=configs/{name}.py{colon}{arg}", *flags]
    command.append(f"--workdir={workdir}")
    return subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


def launch_ok(config: str, workdir: str | Path, *flags: str, **env: str) -> str:
    """Runs :func:`launch`, asserts success, returns its stderr (the log)."""
    done = launch(config, workdir, *flags, **env)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stderr


def _key(url: str) -> str:
    """``gs://bucket/x`` → ``bucket/x`` (gcsfs's object names)."""
    return url.removeprefix("gs://")


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _trajectory(records: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[record[key] for key in TRAJECTORY] for record in records])


def _leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


# --------------------------------------------------------------------------------------
# Pre-training into gs://, resuming there, and the same two runs on a local disk.

# The local reference: what the two gs:// commands run, in one process (one compilation).
LOCAL_RUN_AND_RESUME = """
import sys
from pimc_jax import parallel
from pimc_jax.launcher import load_config, run
parallel.set_xla_cpu_flags()  # as launch.py, so both runs compile alike
for total_steps in (2, 4):
    config = load_config("configs/pretrain.py:tiny")
    config.total_steps, config.global_batch_size = total_steps, 16
    run(config, sys.argv[1])
"""


@pytest.fixture(scope="module")
def gs_run(gcs, tmp_path_factory) -> dict[str, Any]:
    """2 steps into ``gs://bucket/run``, then a resume to 4; the same into a local workdir."""
    first_log = launch_ok("pretrain:tiny", RUN, "--config.total_steps=2", BATCH)
    after_first = sorted(gcs.find(_key(RUN)))
    second_log = launch_ok("pretrain:tiny", RUN, "--config.total_steps=4", BATCH)
    local = tmp_path_factory.mktemp("local_run")
    done = subprocess.run(
        [sys.executable, "-c", LOCAL_RUN_AND_RESUME, str(local)],
        cwd=ROOT,
        env=one_cpu_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return {
        "first_log": first_log,
        "after_first": after_first,
        "second_log": second_log,
        "local": local,
    }


def test_gs_workdir_pretrains_checkpoints_and_resumes(gs_run, gcs):
    root = _key(RUN)
    after_first = set(gs_run["after_first"])
    assert {f"{root}/config.json", f"{root}/metrics.jsonl"} <= after_first
    assert f"{root}/checkpoints/2/commit_success.txt" in after_first  # Orbax's completion mark
    assert any(name.startswith(f"{root}/tensorboard/events.out.tfevents.") for name in after_first)
    assert not (ROOT / "gs:").exists()  # nothing went to a local "gs:" folder

    assert f"Resumed from {RUN}/checkpoints/2 at step 2" in gs_run["second_log"]
    committed = sorted(
        int(name.split("/")[-2])
        for name in gcs.find(f"{root}/checkpoints")
        if name.endswith("/commit_success.txt") and name.count("/") == 4
    )
    assert committed == [2, 4]
    assert json.loads(gcs.cat(f"{root}/config.json"))["total_steps"] == 2  # the first run's
    assert json.loads(gcs.cat(f"{root}/config.2.json"))["total_steps"] == 4  # the resume's

    # The resumed gs:// run reproduces the same two commands on a local disk.
    remote = _jsonl(gcs.cat(f"{root}/metrics.jsonl").decode())
    local = _jsonl((gs_run["local"] / "metrics.jsonl").read_text())
    assert [r["step"] for r in remote] == [r["step"] for r in local] == [1, 2, 3, 4]
    np.testing.assert_allclose(_trajectory(remote), _trajectory(local), rtol=1e-5, atol=1e-7)


def test_tensorboard_reads_the_gs_event_files(gs_run, gcs):
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(f"{RUN}/tensorboard")  # read from the bucket
    events.Reload()
    loss = events.Scalars("loss")
    expected = _jsonl(gcs.cat(f"{_key(RUN)}/metrics.jsonl").decode())
    assert [s.step for s in loss] == [r["step"] for r in expected]  # both runs' files
    np.testing.assert_allclose([s.value for s in loss], [r["loss"] for r in expected], rtol=1e-6)


def test_gs_checkpoint_restores_in_process(gs_run, gcs):
    assert checkpoint_steps(RUN) == [2, 4]
    remote = load_params(RUN)
    local = load_params(gs_run["local"])
    assert remote.spec == local.spec
    for a, b in zip(_leaves(remote.variables), _leaves(local.variables), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

    # A step cut off mid-save has no commit_success.txt: it is not a checkpoint. (Written
    # by another client: the listing cached by the calls above must be refreshed.)
    partial = f"{_key(RUN)}/checkpoints/6/params/_METADATA"
    gcs.pipe(partial, b"{}")
    try:
        assert checkpoint_steps(RUN) == [2, 4]
        assert storage.as_path(f"{RUN}/checkpoints/6").is_dir()  # seen, and left out
        assert read_meta(RUN)["step"] == 4
    finally:
        gcs.rm(partial)


def test_gs_evaluation_from_the_cli(gs_run, gcs):
    workdir = f"gs://{BUCKET}/eval"
    launch_ok("eval_pastis_classification:tiny", workdir, f"--config.init_from={RUN}", *LINEAR)
    results = json.loads(gcs.cat(f"{_key(workdir)}/results.json"))
    assert results["init_from"] == RUN
    assert results["checkpoint"] == f"{RUN}/checkpoints/4"
    assert results["step"] == 4
    assert 0.0 <= results["metrics"]["overall_accuracy"] <= 1.0
    assert gcs.cat(f"{_key(workdir)}/results.md").decode() == results_markdown(results)
    for file_name in results.get("figures", {}).values():  # drawn locally, then uploaded
        assert gcs.cat(f"{_key(workdir)}/{file_name}").startswith(b"\x89PNG")
    assert not (ROOT / "gs:").exists()


# --------------------------------------------------------------------------------------
# Locations that cannot work: one line at start, nothing written.


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ("--workdir=s3://bucket/run",),
            "--workdir=s3://bucket/run: unsupported storage scheme 's3://'",
        ),
        (
            ("--workdir=gs:/bucket/run",),
            "--workdir=gs:/bucket/run: not a valid URL ('gs:/' needs two slashes",
        ),
        (
            ("--workdir=gs://no-such-bucket/run",),
            "--workdir=gs://no-such-bucket/run: bucket gs://no-such-bucket does not exist",
        ),
        (
            ("--config.data.name=patches", f"--config.data.path=gs://{BUCKET}/patches"),
            f"--config.data.path=gs://{BUCKET}/patches: data.name='patches' reads local files",
        ),
    ],
    ids=["unknown-scheme", "one-slash", "missing-bucket", "remote-data-for-local-source"],
)
def test_unusable_location_fails_at_start_in_one_line(gcs, tmp_path, flags, message):
    workdir = next((f.partition("=")[2] for f in flags if f.startswith("--workdir=")), tmp_path)
    done = launch("pretrain:tiny", workdir, *[f for f in flags if not f.startswith("--workdir")])
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    fatal = [line for line in done.stderr.splitlines() if line.startswith("FATAL")]
    assert len(fatal) == 1 and fatal[0].startswith("FATAL: StorageError: ")
    assert message in fatal[0]
    assert "step 1/" not in done.stdout  # no training work
    assert not (ROOT / "gs:").exists() and not (ROOT / "s3:").exists()


def test_gs_without_gcsfs_fails_at_start_in_one_line(gcs, tmp_path):
    # A gcsfs that cannot be imported, ahead of the installed one on the path.
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "gcsfs.py").write_text("raise ImportError('gcsfs is not installed')\n")
    workdir = f"gs://{BUCKET}/no_gcsfs"
    done = launch("pretrain:tiny", workdir, PYTHONPATH=str(tmp_path / "shadow"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    fatal = [line for line in done.stderr.splitlines() if line.startswith("FATAL")]
    assert fatal == [
        f"FATAL: StorageError: --workdir={workdir}: gs:// paths need the 'gcsfs' package, "
        "which is not installed (pip install 'pimc_jax[gcs]')"
    ]
    assert not gcs.exists(_key(workdir))


# --------------------------------------------------------------------------------------
# The writers, in this process: a gs:// file holds what the local writer puts on disk.


def test_jsonl_writer_on_gs_matches_local(gcs, tmp_path):
    url, local = f"gs://{BUCKET}/writers/metrics.jsonl", tmp_path / "metrics.jsonl"
    # A resumed run after a crash: a last line cut short, then two more runs.
    gcs.pipe(_key(url), b'{"step": 1, "loss": 2.5}\n{"step": 2, "lo')
    local.write_bytes(b'{"step": 1, "loss": 2.5}\n{"step": 2, "lo')
    for path in (url, local):
        with metrics.JsonlWriter(path) as writer:
            writer.write(2, {"loss": np.float32(2.25), "nan": math.nan})
        with metrics.JsonlWriter(path) as writer:
            writer.write(3, {"loss": 2.0})
    assert gcs.cat(_key(url)) == local.read_bytes()
    lines = local.read_text().splitlines()
    assert lines[1] == '{"step": 2, "lo'  # terminated, then left alone
    assert [r["step"] for r in _jsonl("\n".join(lines[2:]))] == [2, 3]


def test_tensorboard_writer_on_gs_matches_local(gcs, tmp_path):
    from tensorboard.backend.event_processing import event_file_loader

    url = f"gs://{BUCKET}/writers/tensorboard"
    paths = []
    for logdir in (url, tmp_path / "tensorboard"):
        with metrics.TensorBoardWriter(logdir) as writer:
            writer.scalars(1, {"loss": 3.25, "acc": np.float32(0.5)})
            writer.text(1, "config", "hello")
            writer.scalars(7, {"loss": 2.0})
        paths.append(writer.path)
    assert paths[0].startswith(f"{url}/events.out.tfevents.")
    assert len(gcs.ls(_key(url))) == 1

    def events(path: str) -> list[Any]:
        loaded = list(event_file_loader.LegacyEventFileLoader(path).Load())
        for event in loaded:
            event.wall_time = 0.0
        return loaded

    local_copy = tmp_path / "downloaded"
    local_copy.write_bytes(gcs.cat(_key(paths[0])))
    assert events(str(local_copy)) == events(paths[1])
    assert len(events(paths[1])) == 4  # file version, two scalar events, one text event


def test_results_and_staged_files_on_gs(gcs, tmp_path):
    workdir = f"gs://{BUCKET}/results"
    results = {"task": "eval_x", "step": 3, "metrics": {"overall_accuracy": 0.5}}
    write_results(workdir, results)
    assert json.loads(gcs.cat(f"{_key(workdir)}/results.json")) == results
    assert gcs.cat(f"{_key(workdir)}/results.md").decode() == results_markdown(results)

    with storage.local_staging(workdir) as staging:
        assert not storage.is_remote(staging)
        (staging / "figures").mkdir()
        (staging / "figures" / "a.png").write_bytes(b"\x89PNG a")
        (staging / "b.txt").write_text("b")
    assert gcs.cat(f"{_key(workdir)}/figures/a.png") == b"\x89PNG a"
    assert gcs.cat(f"{_key(workdir)}/b.txt") == b"b"
    with storage.local_staging(tmp_path) as staging:  # a local directory is used as it is
        assert staging == tmp_path

    storage.append_text(f"{workdir}/history.jsonl", "1\n")
    storage.append_text(f"{workdir}/history.jsonl", "2\n")
    assert gcs.cat(f"{_key(workdir)}/history.jsonl") == b"1\n2\n"


# --------------------------------------------------------------------------------------
# PASTIS and EuroSAT read from gs://, and an evaluation polling a gs:// run.


@pytest.mark.slow
def test_gs_data_directories_and_polling(gcs, tmp_path):
    from format_writers import write_eurosat_archives, write_pastis_dir

    write_pastis_dir(tmp_path / "pastis", num_patches=3, size=32)
    write_eurosat_archives(tmp_path / "eurosat", per_class=3, rgb=False, split_lists=True)
    gcs.put(str(tmp_path / "pastis"), f"{BUCKET}/data/pastis", recursive=True)
    gcs.put(str(tmp_path / "eurosat"), f"{BUCKET}/data/eurosat", recursive=True)
    assert gcs.exists(f"{BUCKET}/data/pastis/metadata.geojson")
    assert gcs.exists(f"{BUCKET}/data/eurosat/EuroSATallBands.zip")
    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}  # where gs:// data is prepared
    pastis_flags = ("--config.data.name=pastis", "--config.model.indices=('ndvi','evi','savi')")

    # Pre-training on PASTIS read from the bucket, and from the same files on disk.
    run = f"gs://{BUCKET}/pastis_run"
    data = f"gs://{BUCKET}/data/pastis"
    steps = ("--config.total_steps=2", BATCH)
    launch_ok("pretrain:tiny", run, *pastis_flags, f"--config.data.path={data}", *steps, **cache)
    local_run = tmp_path / "local_run"
    local_data = f"--config.data.path={tmp_path / 'pastis'}"
    launch_ok("pretrain:tiny", local_run, *pastis_flags, local_data, *steps)
    assert json.loads(gcs.cat(f"{_key(run)}/config.json"))["data"]["path"] == data
    assert list((tmp_path / "cache" / "pimc_jax" / "tfds").iterdir())  # prepared locally
    remote = _jsonl(gcs.cat(f"{_key(run)}/metrics.jsonl").decode())
    local = _jsonl((local_run / "metrics.jsonl").read_text())
    np.testing.assert_allclose(_trajectory(remote), _trajectory(local), rtol=1e-5, atol=1e-7)

    # EuroSAT archives read from the bucket: the scores of the local evaluation.
    eurosat = ("--config.data.name=eurosat", "--config.data.eurosat_variant=all", *LINEAR)
    remote_flags = (f"--config.data.path=gs://{BUCKET}/data/eurosat", f"--config.init_from={run}")
    local_flags = (f"--config.data.path={tmp_path / 'eurosat'}", f"--config.init_from={local_run}")
    launch_ok("eval_eurosat", f"gs://{BUCKET}/eurosat_eval", *eurosat, *remote_flags, **cache)
    launch_ok("eval_eurosat", tmp_path / "eurosat_eval", *eurosat, *local_flags)
    remote_scores = json.loads(gcs.cat(f"{BUCKET}/eurosat_eval/results.json"))["metrics"]
    local_scores = json.loads((tmp_path / "eurosat_eval" / "results.json").read_text())["metrics"]
    assert remote_scores.keys() == local_scores.keys()
    for name, value in local_scores.items():
        assert remote_scores[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name

    # Polling the gs:// run: it evaluates its final checkpoint and stops.
    poll = f"gs://{BUCKET}/poll"
    polling = (
        "--config.data.name=pastis",
        f"--config.data.path={data}",
        f"--config.init_from={run}",
        "--config.poll=True",
        "--config.poll_interval_s=1",
        "--config.poll_timeout_s=30",
        "--config.train_folds=(1,)",
        "--config.val_folds=(2,)",
        "--config.test_folds=(3,)",
        "--config.data.max_dates=16",
        *LINEAR,
    )
    launch_ok("eval_pastis_classification", poll, *polling, **cache)
    history = _jsonl(gcs.cat(f"{_key(poll)}/history.jsonl").decode())
    assert [line["step"] for line in history] == [2]
    step_results = json.loads(gcs.cat(f"{_key(poll)}/steps/2/results.json"))
    assert step_results["checkpoint"] == f"{run}/checkpoints/2"
    assert history[0]["overall_accuracy"] == step_results["metrics"]["overall_accuracy"]


def test_gs_workdir_lock_admits_one_run_and_takes_over_a_dead_ones(gcs):
    """On ``gs://`` the lock is a create-only upload (``ifGenerationMatch=0``): a second
    taker is refused in one line naming the holder; a lock whose process on this host is
    gone is moved aside and taken over."""
    import os
    import socket

    from pimc_jax.workdir_lock import LOCK_NAME, WorkdirLock, WorkdirLockedError

    workdir = f"gs://{BUCKET}/locked"
    lock_object = f"{BUCKET}/locked/{LOCK_NAME}"
    first = WorkdirLock(workdir)
    first.acquire()
    assert json.loads(gcs.cat(lock_object))["pid"] == os.getpid()
    with pytest.raises(WorkdirLockedError, match="in use by another run") as error:
        WorkdirLock(workdir).acquire()
    assert "\n" not in str(error.value) and f"pid {os.getpid()} " in str(error.value)
    first.release()
    assert not gcs.exists(lock_object)

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"host": socket.gethostname(), "pid": dead.pid, "pid_start": None, "started": "x"}
    gcs.pipe(lock_object, json.dumps(record).encode())
    second = WorkdirLock(workdir)
    second.acquire()
    assert second.held and json.loads(gcs.cat(lock_object))["pid"] == os.getpid()
    aside = [path for path in gcs.ls(f"{BUCKET}/locked") if ".stale-" in path]
    assert len(aside) == 1 and json.loads(gcs.cat(aside[0])) == record
    second.release()
