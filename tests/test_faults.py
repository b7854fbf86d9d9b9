"""Fault injection: a command killed (SIGTERM or SIGKILL) at seeded points while it writes. After
each kill the command's outputs hold nothing half-written; after SIGTERM no staging is left; the
next run of the command clears a SIGKILLed one's staging and gives the uninterrupted result.

`make test` tries one point per signal (as soon as the command writes); `GARDEN_CHAOS_POINTS=N` (as
`make chaos` sets) tries N, the others at seeded random delays."""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, SMALL, garden, sets, tmpfs

from garden.export.manifest import size_bytes
from garden.run_folder import LOCK, FolderLock, RunFolder

POINTS = int(os.environ.get("GARDEN_CHAOS_POINTS", "1"))
# a kill point (a command's start, its kill, the checks and its rerun) took up to a minute on 2 loaded cores
pytestmark = pytest.mark.timeout(900 + 150 * (POINTS - 1))


def start(*args) -> subprocess.Popen:
    command = [sys.executable, "-m", "garden.cli", *map(str, args)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_once(process, writing, number, delay, seconds=300) -> str:
    """Sends `number` to `process` `delay` s after `writing()` first holds; returns its stderr (its stdout
    is `process.stdout_text`). A signal that comes after the command is done may end the process as it
    exits: the caller checks for the command's last line (done_before)."""
    deadline = time.time() + seconds
    while not writing():
        assert process.poll() is None, f"the command ended before it was killed: {process.communicate()[1][-2000:]}"
        assert time.time() < deadline, "the command never started writing"
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(number)
    process.stdout_text, stderr = process.communicate(timeout=seconds)
    return stderr


def done_before(process, number, printed: str) -> bool:
    """Whether the command had finished (its last line holds `printed`) when `number` came: a signal
    after main returned, as the interpreter exits, ends it with the signal's default action."""
    return process.returncode in (0, -number) and printed in process.stdout_text


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
        stderr = kill_once(
            process, lambda out=out: staged_bytes(out, ".convert-*/*"), number, rng.uniform(0.0, 2.0) if point else 0.0
        )
        if done_before(process, number, '"examples": 10000'):
            assert records(out) == expected
            continue
        assert not list(out.glob("v-*")), "a shard was renamed in before every shard was whole"
        if number == signal.SIGTERM:
            assert process.returncode == 143 and stderr.strip().splitlines()[-1] == "garden: stopped by SIGTERM", stderr
            assert not os.path.exists(out) or os.listdir(out) == []  # staging and lock cleaned up on the signal
        garden(*convert, "--out", out / "v-*.tfrecord")
        assert sorted(os.listdir(out)) == ["v-00000-of-00002.tfrecord", "v-00001-of-00002.tfrecord"]
        assert records(out) == expected


@pytest.fixture
def small_disk(tmp_path):
    """600 KiB: room for one tiny checkpoint, not two."""
    with tmpfs(tmp_path / "disk", 600) as disk:
        yield disk


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


def test_an_export_into_a_full_disk_is_one_line_and_keeps_the_export_before(tiny_run, tmp_path):
    """The fault: the older, good export was removed first, then OSError [Errno 28], and a partial
    model_none.tflite.tmp stayed."""
    steps = RunFolder(tiny_run).kept_steps()
    garden("export", tiny_run, "--out", tmp_path / "measure")
    size = size_bytes(str(tmp_path / "measure" / "saved_model"))
    with tmpfs(tmp_path / "disk", int(2.5 * size / 1024)) as disk:  # room for one export and its staging
        out = disk / "export"
        garden("export", tiny_run, "--checkpoint", steps[0], "--out", out)
        before = (out / "manifest.json").read_text()
        full = garden("export", tiny_run, "--out", out, check=False)
        line = full.stderr.strip()
        assert full.returncode == 2 and "\n" not in line, line
        assert line == (
            f"garden: error: no space left on the disk of {out} writing saved_model; free space there or pass --out "
            "a folder on another disk (the export before is kept)"
        )
        assert (
            sorted(os.listdir(out)) == ["manifest.json", "saved_model"]
            and (out / "manifest.json").read_text() == before
        )
        assert json.loads(before)["step"] == steps[0]
        served = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
        probabilities = served(image=tf.zeros([1, 28, 28, 1]))["probabilities"].numpy()
        np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_export_keeps_the_export_before_and_its_rerun_leaves_no_staging(number, tiny_run, tmp_path):
    """The fault: a killed export left hidden .export-* and .saved_model-* folders for good."""
    steps = RunFolder(tiny_run).kept_steps()
    rng = random.Random(number)
    for point in range(POINTS):
        out = tmp_path / f"{number.name}-{point}"
        garden("export", tiny_run, "--checkpoint", steps[0], "--out", out)
        before = (out / "manifest.json").read_text()
        process = start("export", tiny_run, "--out", out)
        stderr = kill_once(
            process,
            lambda out=out: staged_bytes(out, ".export-*/**/*"),
            number,
            rng.uniform(0.0, 3.0) if point else 0.0,
        )
        if done_before(process, number, "manifest: "):
            assert json.loads((out / "manifest.json").read_text())["step"] == steps[-1]
            continue
        if number == signal.SIGTERM:  # cleaned up on the signal: the export before is back, whole
            assert process.returncode == 143 and stderr.strip().splitlines()[-1] == "garden: stopped by SIGTERM", stderr
            assert sorted(os.listdir(out)) == ["manifest.json", "saved_model"]
            assert (out / "manifest.json").read_text() == before
        garden("export", tiny_run, "--out", out)
        assert sorted(os.listdir(out)) == ["manifest.json", "saved_model"]
        assert json.loads((out / "manifest.json").read_text())["step"] == steps[-1]


def checkpoint_values(folder) -> dict:
    """name -> value of every tensor in the newest checkpoint under `folder` (step counters aside)."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(folder)))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if "save_counter" not in name and "_CHECKPOINTABLE_OBJECT_GRAPH" not in name
    }


def assert_same_values(given: dict, expected: dict) -> None:
    assert sorted(given) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(given[name], value, err_msg=name)


@pytest.fixture(scope="module")
def quantized_lm(trained_lm, tmp_path_factory):
    """The weights of `garden quantize` int8 of the language model, never killed."""
    out = tmp_path_factory.mktemp("quantized") / "int8"
    garden("quantize", trained_lm, "--mode", "int8", "--out", out)
    return checkpoint_values(out / "model")


# make test tries SIGTERM, which left the staging (a quantize takes minutes on 2 cores); make chaos both
QUANTIZE_SIGNALS = [signal.SIGTERM, signal.SIGKILL] if POINTS > 1 else [signal.SIGTERM]


@pytest.mark.parametrize("number", QUANTIZE_SIGNALS, ids=[number.name for number in QUANTIZE_SIGNALS])
def test_a_killed_quantize_leaves_no_half_written_run_and_its_rerun_quantizes_as_before(
    number, trained_lm, quantized_lm, tmp_path
):
    """The fault: a quantize stopped by SIGTERM left its OUT.partial staging behind."""
    rng = random.Random(number)
    for point in range(POINTS):
        out = tmp_path / f"{number.name}-{point}"
        staging = out.with_name(out.name + ".partial")
        process = start("quantize", trained_lm, "--mode", "int8", "--out", out)
        delay = rng.uniform(0.0, 2.0) if point else 0.0
        stderr = kill_once(process, lambda s=staging, o=out: s.exists() or o.exists(), number, delay)
        if number == signal.SIGTERM and process.returncode == 143:
            assert stderr.strip().splitlines()[-1] == "garden: stopped by SIGTERM" and not staging.exists(), stderr
        if not out.exists():  # renamed in whole or not at all; the rerun clears a SIGKILLed one's staging
            garden("quantize", trained_lm, "--mode", "int8", "--out", out)
        assert not staging.exists()
        assert_same_values(checkpoint_values(out / "model"), quantized_lm)


def test_a_quantize_into_a_full_disk_is_one_line_and_leaves_nothing(trained_lm, small_disk):
    """The fault: the checkpoint write into a full --out disk ended in a SaveV2 traceback."""
    out = small_disk / "int8"
    full = garden("quantize", trained_lm, "--mode", "int8", "--out", out, check=False)
    line = full.stderr.strip()
    assert full.returncode == 2 and "\n" not in line, full.stderr[-2000:]
    assert line.startswith(f"garden: error: no space left on the disk of {out}: the quantized run needs about ")
    assert line.endswith("MiB; free space there, or pass --out on another disk")
    assert os.listdir(small_disk) == []  # no staging, no half-written run


def test_a_second_quantize_into_the_same_out_is_refused_and_leaves_the_first_ones_staging(
    trained_lm, quantized_lm, tmp_path
):
    """The fault: a second quantize into the --out of one running cleared its OUT.partial staging (each
    clears a killed one's) and wrote its own there. A running quantize holds a lock on OUT.partial (its
    holder named in it); another is refused in one line naming it, and touches nothing; once it ends,
    a quantize into that --out writes the weights a lone one writes, and no staging stays."""
    out = tmp_path / "int8"
    staging = out.with_name("int8.partial")
    lock = staging / LOCK
    first = start("quantize", trained_lm, "--mode", "int8", "--out", out)
    holder = {}
    while not holder:  # a running quantize holds the staging's lock, its name in it
        assert first.poll() is None, first.communicate()[1][-2000:]
        with contextlib.suppress(OSError, ValueError):
            holder = json.loads(lock.read_text())
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert holder["pid"] == first.pid and holder["command"] == "quantize"

    with FolderLock(staging, "quantize", flag="--out"):  # as the first would hold it, running
        (staging / "run").mkdir(exist_ok=True)
        (staging / "run" / "work").write_text("the first quantize's")
        refused = garden("quantize", trained_lm, "--mode", "int8", "--out", out, check=False)
        line = refused.stderr.strip()
        assert refused.returncode == 2 and "\n" not in line, refused.stderr
        assert line.startswith(f"garden: error: {staging} is in use by 'garden quantize' (PID {os.getpid()}"), line
        assert line.endswith("or pass --out another folder"), line
        assert (staging / "run" / "work").read_text() == "the first quantize's" and not out.exists()
    garden("quantize", trained_lm, "--mode", "int8", "--out", out)
    assert not staging.exists()
    assert_same_values(checkpoint_values(out / "model"), quantized_lm)


TRAIN = ["train", "mnist_resnet", *sets(*SMALL, "trainer.train_steps=40"), "--run-dir"]


@pytest.fixture(scope="module")
def never_killed(tmp_path_factory):
    """The weights of TRAIN's run, never killed."""
    run = tmp_path_factory.mktemp("never_killed") / "run"
    garden(*TRAIN, run)
    return checkpoint_values(run / "checkpoints")


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_training_killed_again_and_again_resumes_to_the_uninterrupted_weights(number, never_killed, tmp_path):
    """Each start of one run is killed at a seeded point; after each kill the newest checkpoint
    loads and nothing half-written is left; the run then completes to the weights of a run never
    killed, bit for bit."""
    train, rng, run = TRAIN, random.Random(number), tmp_path / "run"
    for _ in range(POINTS):
        process = start(*train, run)
        holds = lambda p=process: (run / LOCK).exists() and f'"pid": {p.pid}' in (run / LOCK).read_text()  # noqa: E731
        stderr = kill_once(process, holds, number, rng.uniform(0.0, 12.0))
        if done_before(process, number, '"run_dir"'):
            break
        if number == signal.SIGTERM:
            assert process.returncode == 143 and not (run / LOCK).exists(), stderr
        assert not list(run.glob("**/*_temp")) and not list(run.glob("**/*.tmp"))
        if tf.train.latest_checkpoint(str(run / "checkpoints")):
            checkpoint_values(run / "checkpoints")  # reads whole
    garden(*train, run)
    assert_same_values(checkpoint_values(run / "checkpoints"), never_killed)


STOPS_INSIDE = """
import os
import signal

import numpy as np
import tensorflow as tf

from garden.data.examples import Examples
from garden.registry import DATASETS


@DATASETS.register("stops_inside")
def stops_inside(config, label_names=None):
    def stop(x):
        os.kill(os.getpid(), signal.SIGTERM)  # comes while TensorFlow runs this function
        return x

    tf.py_function(stop, [tf.constant(0)], tf.int32)
    return Examples({"image": np.zeros([64, 28, 28, 1], np.float32)}, np.zeros(64, np.int64), list("0123456789"))
"""


def test_sigterm_that_comes_inside_a_tensorflow_op_stops_the_command_as_sigterm(tmp_path):
    """The fault (a data convert killed under load): SIGTERM that came while TensorFlow ran Python
    code (a py_function) became TensorFlow's UnknownError: a traceback and exit 1, not 143."""
    (tmp_path / "stops_inside.py").write_text(STOPS_INSIDE)
    run_dir = tmp_path / "run"
    stopped = subprocess.run(
        [sys.executable, "-m", "garden.cli", "--import", "stops_inside", "train", "mnist_resnet"]
        + ["--set", "task.train_data.dataset=stops_inside", "--run-dir", str(run_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert stopped.stderr.strip().splitlines()[-1].startswith("garden: stopped by SIGTERM"), stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr and not (run_dir / LOCK).exists()
