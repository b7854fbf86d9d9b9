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
