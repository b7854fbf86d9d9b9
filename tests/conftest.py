"""Shared test helpers: the CLI runner, the tiny variants as --set strings, and the trained runs that tests share."""

import contextlib
import fcntl
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF C++ logs; Python errors still surface

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from garden import cli, registry  # noqa: E402
from garden.config import tiny_sets  # noqa: E402
from garden.generate.generator import generate_inputs  # noqa: E402
from garden.generate.sampler import Sampling  # noqa: E402

registry.load_all()

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# mnist_resnet's and r8_minilm's tiny variants as --set strings, for the commands that take no
# --tiny (sweep) and the tests that apply one to another experiment.
TINY = list(tiny_sets("mnist_resnet"))  # a 4096-example slice and a small ResNet: 300 steps in seconds
TINY_TEXT = list(tiny_sets("r8_minilm"))  # a 2-layer BERT on 1024 R8 documents: about half a minute


def sets(*overrides):
    """Command-line --set arguments for TINY plus `overrides`."""
    return [arg for s in (*TINY, *overrides) for arg in ("--set", s)]


def garden(*args, check=True):
    """Runs the garden CLI's `main` in this process (sparing the 8 s that a new process spends
    importing TensorFlow); returns a CompletedProcess. Training starts from a cleared Keras session,
    so that its layer names are a new process's, and leaves the float32 policy that a run folder
    loads under; the seeds and op determinism it sets stay set, as `garden train` leaves them.
    Tests that need a process of its own (multi-worker jobs, kills, servers) start one themselves."""
    args = [str(a) for a in args]
    trains = args[0] == "train" or "--cross-fit" in args
    if trains:
        keras.backend.clear_session()
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = cli.main(args)
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code
        finally:
            if trains:
                keras.config.set_dtype_policy("float32")
    result = subprocess.CompletedProcess(["garden", *args], code, stdout.getvalue(), stderr.getvalue())
    if check and result.returncode != 0:
        raise AssertionError(f"garden {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@contextlib.contextmanager
def tmpfs(folder, kib: int):
    """A tmpfs of `kib` KiB mounted at `folder` (CI runs as root and may mount one)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); CI runs this as root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # files the process may still hold open


def saved_model_greedy(saved_model, prompt: str, max_new_tokens: int) -> str:
    """`prompt` and its greedy continuation from a SavedModel's `generate` signature, loaded from disk."""
    generate = tf.saved_model.load(str(saved_model)).signatures["generate"]
    text = generate(**generate_inputs([prompt], max_new_tokens, Sampling(temperature=0)))["text"].numpy()[0]
    return prompt + text.decode("utf-8", errors="replace")


def write_sentencepiece(path, texts, vocab_size, model_type="unigram", **pieces) -> int:
    """Trains a SentencePiece model of `texts` into `path` (a .model file, on one thread, so the
    same texts give the same model); returns its vocabulary size."""
    import sentencepiece

    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_prefix=str(path).removesuffix(".model"),
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type=model_type,
        num_threads=1,
        minloglevel=2,
        **pieces,
    )
    return sentencepiece.SentencePieceProcessor(model_file=str(path)).vocab_size()


def write_byte_bpe(folder, texts, vocab_size, special_tokens) -> int:
    """Trains a byte-level BPE of `texts` into folder/vocab.json and merges.txt; returns its size."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, special_tokens=special_tokens)
    tokenizer.save_model(str(folder))
    return tokenizer.get_vocab_size()


def train_killed_after(step, run_dir, *train_args):
    """Starts `garden train *train_args --run-dir run_dir` and SIGKILLs it once checkpoint `step` is listed."""
    command = [sys.executable, "-m", "garden.cli", "train", *map(str, train_args), "--run-dir", str(run_dir)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state, deadline = run_dir / "checkpoints" / "checkpoint", time.time() + 300
    while not (state.exists() and f"ckpt-{step}" in state.read_text()) and time.time() < deadline:
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def trained_once(tmp_path_factory, name, *train_args):
    """The folder of a run that `garden train *train_args` trains once per test session: the
    `make test` processes share it (the first trains it while the others wait). Tests read it; the
    ones that change a run copy it first."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    run_dir = shared / "shared_runs" / name
    run_dir.parent.mkdir(exist_ok=True)
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / f"{name}.done").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # a failed attempt's leftovers
            garden("train", *train_args, "--run-dir", run_dir)
            (shared / f"{name}.done").touch()
    return run_dir


SMALL = [  # the tiny ResNet, validated and checkpointed every 10 steps, no warmup
    *[s for s in TINY if not s.startswith("trainer.") and "num_examples" not in s],
    "task.validation_data.num_examples=200",
    "trainer.steps_per_loop=10",
    "trainer.checkpoint_interval=10",
    "trainer.validation_interval=10",
    "trainer.optimizer_config.warmup.type=null",
]


def validations(run_dir):
    """step -> validation accuracy, as metrics.jsonl recorded them (the last record of a step wins)."""
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return {row["step"]: row["accuracy"] for row in rows if row["split"] == "validation"}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """mnist_resnet's tiny variant, as `garden train mnist_resnet --tiny` trains it."""
    return trained_once(tmp_path_factory, "tiny", "mnist_resnet", "--tiny")


@pytest.fixture(scope="session")
def text_run(tmp_path_factory):
    """r8_minilm's tiny variant (a 2-layer BERT from scratch), as `garden train r8_minilm --tiny` trains it."""
    return trained_once(tmp_path_factory, "r8_tiny", "r8_minilm", "--tiny")


@pytest.fixture(scope="session")
def trained_lm(tmp_path_factory):
    """shakespeare_char after 100 steps of 32 windows (20 of them warming up to twice its learning rate)."""
    steps = [
        "trainer.train_steps=100",
        "trainer.steps_per_loop=50",
        "trainer.validation_interval=100",
        "trainer.checkpoint_interval=100",
        "trainer.optimizer_config.warmup.linear.warmup_steps=20",
        "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=0.002",
        "task.validation_data.num_examples=1000",
        "task.train_data.global_batch_size=32",
    ]
    return trained_once(
        tmp_path_factory, "shakespeare_char", "shakespeare_char", *[a for s in steps for a in ("--set", s)]
    )


MNIST_FILES_COUNT = 400


def mnist_pixels(count=MNIST_FILES_COUNT):
    """The first `count` MNIST test images, evenly spaced, as 8-bit pixels [N, 28, 28], and their labels."""
    from garden.data.mnist import mnist

    examples = mnist("test").take(count)
    return np.round(examples.features["image"][..., 0] * 255).astype(np.uint8), examples.labels


@pytest.fixture(scope="session")
def mnist_files(tmp_path_factory):
    """(a folder ROOT/DIGIT/N.png of 400 MNIST test images written with Pillow, the 4 TFRecord shards
    that `garden data convert` makes of it)."""
    root = tmp_path_factory.mktemp("mnist_files")
    for index, (image, label) in enumerate(zip(*mnist_pixels())):
        folder = root / "folder" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{index}.png")
    result = garden("data", "convert", root / "folder", "--out", root / "shards" / "train-*.tfrecord", "--shards", "4")
    assert json.loads(result.stdout.strip().splitlines()[-1])["examples"] == MNIST_FILES_COUNT
    return root / "folder", root / "shards"
