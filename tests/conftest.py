"""Shared fixtures: a tiny MNIST configuration and one trained run that export tests reuse."""

import os
import pathlib
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF C++ logs; Python errors still surface

import pytest  # noqa: E402

from garden.cli import _register_all  # noqa: E402

_register_all()

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# A small slice and a small ResNet: trains in seconds on 2 CPU cores.
TINY = [
    "task.train_data.num_examples=4096",
    "task.train_data.global_batch_size=64",
    "task.validation_data.num_examples=1000",
    "task.test_data.num_examples=1000",
    "task.model.backbone.params.stem_width=16",
    "task.model.backbone.params.stage_widths=[16, 32]",
    "trainer.train_steps=300",
    "trainer.steps_per_loop=50",
    "trainer.checkpoint_interval=100",
    "trainer.validation_interval=300",
    "trainer.optimizer_config.learning_rate.cosine.decay_steps=300",
    "trainer.optimizer_config.warmup.linear.warmup_steps=30",
    "runtime.deterministic=true",
]


def sets(*overrides):
    """Command-line --set arguments for TINY plus `overrides`."""
    return [arg for s in (*TINY, *overrides) for arg in ("--set", s)]


def garden(*args, env=None, timeout=600, check=True):
    """Runs the garden CLI in a subprocess; returns the CompletedProcess."""
    result = subprocess.run(
        [sys.executable, "-m", "garden.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"garden {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny MNIST run trained once for the session, as the CLI trains it."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    garden("train", "mnist_resnet", *sets(), "--run-dir", run_dir)
    return run_dir


# A 2-layer BERT with MiniLM's vocabulary on 1024 R8 documents: trains in about half a minute.
TINY_TEXT = [
    "task.init_checkpoint=''", "task.model.tokenizer.vocabulary=all_minilm_l6_v2",
    "task.model.tokenizer.sequence_length=64", "task.model.backbone.params.num_layers=2",
    "task.model.backbone.params.num_heads=2", "task.model.backbone.params.hidden_dim=64",
    "task.model.backbone.params.intermediate_dim=128", "task.train_data.num_examples=1024",
    "task.validation_data.num_examples=300", "task.test_data.num_examples=300", "trainer.train_steps=120",
    "trainer.steps_per_loop=40", "trainer.checkpoint_interval=120", "trainer.validation_interval=120",
    "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=0.002",
    "trainer.optimizer_config.learning_rate.polynomial.decay_steps=120", "runtime.deterministic=true",
]


@pytest.fixture(scope="session")
def text_run(tmp_path_factory):
    """A tiny R8 text classifier trained once for the session, as the CLI trains it."""
    run_dir = tmp_path_factory.mktemp("runs") / "r8_tiny"
    garden("train", "r8_minilm", *[a for s in TINY_TEXT for a in ("--set", s)], "--run-dir", run_dir)
    return run_dir
