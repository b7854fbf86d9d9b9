"""Fault injection: a command killed (SIGTERM or SIGKILL) at seeded points while it writes. After
each kill the command's outputs hold nothing half-written; after SIGTERM no staging is left; the
next run of the command clears a SIGKILLed one's staging and gives the uninterrupted result.

`make test` tries one point per signal; `GARDEN_CHAOS_POINTS=N` (as `make chaos` sets) tries N."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from conftest import ROOT, garden

POINTS = int(os.environ.get("GARDEN_CHAOS_POINTS", "1"))


def start(*args) -> subprocess.Popen:
    command = [sys.executable, "-m", "garden.cli", *map(str, args)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_once(process, writing, number, delay, seconds=300) -> str:
    """Sends `number` to `process` `delay` s after `writing()` first holds; returns its stderr."""
    deadline = time.time() + seconds
    while not writing():
        assert process.poll() is None, f"the command ended before it was killed: {process.communicate()[1][-2000:]}"
        assert time.time() < deadline, "the command never started writing"
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(number)
    return process.communicate(timeout=seconds)[1]


def staged_bytes(folder, pattern) -> int:
    """The bytes written so far into the files `pattern` matches in `folder`."""
    total = 0
    for path in folder.glob(pattern):
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # renamed in between
            pass
    return total


def records(folder) -> list[bytes]:
    return [r.numpy() for path in sorted(map(str, folder.glob("v-*"))) for r in tf.data.TFRecordDataset(path)]


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_data_convert_leaves_no_shard_and_its_rerun_converts_everything(number, tmp_path):
    convert = ["data", "convert", "mnist", "--split", "validation", "--shards", "2"]
    garden(*convert, "--out", tmp_path / "reference" / "v-*.tfrecord")
    expected = records(tmp_path / "reference")
    rng = random.Random(number)
    for point in range(POINTS):
        out = tmp_path / f"{number.name}-{point}"
        process = start(*convert, "--out", out / "v-*.tfrecord")
        stderr = kill_once(process, lambda out=out: staged_bytes(out, ".convert-*/*"), number, rng.uniform(0.0, 2.0))
        if process.returncode == 0:  # it finished before the signal came
            assert records(out) == expected
            continue
        assert not list(out.glob("v-*")), "a shard was renamed in before every shard was whole"
        if number == signal.SIGTERM:
            assert process.returncode == 143 and stderr.strip().splitlines()[-1] == "garden: stopped by SIGTERM"
            assert not os.path.exists(out) or os.listdir(out) == []  # staging and lock cleaned up on the signal
        garden(*convert, "--out", out / "v-*.tfrecord")
        assert sorted(os.listdir(out)) == ["v-00000-of-00002.tfrecord", "v-00001-of-00002.tfrecord"]
        assert records(out) == expected


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KiB tmpfs (CI runs as root and may mount one): room for one tiny checkpoint, not two."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); CI runs this as root")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)  # files the process may still hold open


def test_training_into_a_full_disk_is_one_line_and_keeps_the_checkpoints_before(small_disk):
    """The fault: a ResourceExhaustedError traceback from SaveV2, and a partial checkpoint left behind."""
    run_dir = small_disk / "run"
    steps = ["trainer.train_steps=20", "trainer.steps_per_loop=10", "trainer.checkpoint_interval=10"]
    data = ["task.train_data.num_examples=640", "task.validation_data.num_examples=100"]
    tiny = ["task.model.backbone.params.stem_width=16", "task.model.backbone.params.stage_widths=[16, 32]"]
    full = garden(
        "train", "mnist_resnet", *[a for s in (*steps, *data, *tiny) for a in ("--set", s)], "--run-dir", run_dir,
        check=False,
    )  # fmt: skip
    line = full.stderr.strip()
    assert full.returncode == 2 and "\n" not in line, line
    assert line.startswith(f"garden: error: no space left on the disk of {run_dir} at step 20: a checkpoint needs")
    assert line.endswith(f"the checkpoints before ({run_dir}/checkpoints/ckpt-10) are whole")
    assert not list(run_dir.glob("**/*_temp")) and not (run_dir / ".lock").exists()
    evaluated = garden("eval", run_dir, "--split", "validation").stdout  # the step-10 weights load and evaluate
    assert 0 <= json.loads(evaluated.splitlines()[-1])["accuracy"] <= 1
