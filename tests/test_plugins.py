"""User plugins: a package written here registers a dataset, a backbone and an experiment through a
`garden.plugins` entry point, and a plain module through `garden --import`; Garden is not edited."""

import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT, garden

PLUGIN = '''
"""Two classes of 4x4 images: dark and bright squares with noise."""
import keras
import numpy as np

from garden.config import DataConfig, component, register_experiment
from garden.data.examples import Examples
from garden.models.backbones.backbone import Backbone
from garden.registry import BACKBONES, DATASETS, EXPERIMENTS


@DATASETS.register("squares")
def squares(config, label_names=None):
    rng = np.random.default_rng({"train": 0, "validation": 1, "test": 2}[config.split])
    labels = rng.integers(0, 2, 512)
    images = (0.3 + 0.4 * labels[:, None, None, None] + 0.1 * rng.normal(size=(512, 4, 4, 1))).astype(np.float32)
    return Examples({"image": images}, labels, ["dark", "bright"])


@BACKBONES.register("flat")
class Flat(Backbone):
    def __init__(self, width=8, dtype=None, **kwargs):
        image = keras.Input(shape=(4, 4, 1), name="image")
        x = keras.layers.Dense(width, activation="relu", dtype=dtype)(keras.layers.Flatten(dtype=dtype)(image))
        super().__init__(inputs={"image": image}, outputs={"pooled_output": x}, dtype=dtype, **kwargs)
        self.keep_arguments(width=width)


@register_experiment("squares_flat")
def squares_flat():
    """Bright vs dark squares on a one-layer backbone."""
    config = EXPERIMENTS.get("mnist_resnet")()
    config.task.model.backbone = component("backbone", "flat")
    config.task.model.head = component("head", "classification", num_classes=2)
    for split in ("train", "validation", "test"):
        setattr(config.task, f"{split}_data", DataConfig(dataset="squares", split=split, global_batch_size=64))
    return config
'''

STEPS = [
    "trainer.train_steps=60",
    "trainer.steps_per_loop=20",
    "trainer.checkpoint_interval=60",
    "trainer.validation_interval=60",
    "trainer.optimizer_config.learning_rate.cosine.decay_steps=60",
    "trainer.optimizer_config.warmup.linear.warmup_steps=5",
    "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=0.05",
]


def run(cwd, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "garden.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
    )


@pytest.fixture
def plugin_path(tmp_path):
    """`squares_plugin` with an installed distribution's metadata naming it as a garden.plugins entry point."""
    package = tmp_path / "site" / "squares_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN)
    info = tmp_path / "site" / "squares_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: squares-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[garden.plugins]\nsquares = squares_plugin\n")
    return tmp_path / "site"


def test_plugins_register_parts_that_list_train_and_evaluate(plugin_path, tmp_path):
    """An entry point's experiment is listed with no flag; the same parts as a plain module train with
    `garden --import`, the run's config keeps the import, so eval needs no flag; a missing module is one line."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(plugin_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    listed = run(ROOT, "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^squares_flat\s+image_classification\s+flat\s+squares\s+Bright vs dark", listed.stdout, re.M)
    (tmp_path / "my_squares.py").write_text(PLUGIN)
    run_dir = tmp_path / "run"
    sets = [a for s in STEPS for a in ("--set", s)]
    trained = run(tmp_path, "--import", "my_squares", "train", "squares_flat", *sets, "--run-dir", run_dir)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout.strip().splitlines()[-1])["accuracy"] > 0.9
    assert "imports: [my_squares]" in (run_dir / "config.yaml").read_text()
    evaluated = run(tmp_path, "eval", run_dir, "--split", "test")
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["accuracy"] > 0.9, evaluated.stderr
    missing = garden("--import", "no_such_module", "list", check=False)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == (
        "garden: error: cannot import module 'no_such_module': No module named 'no_such_module'; install it, or "
        "run garden from the folder that holds it\n"
    )
