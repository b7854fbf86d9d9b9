"""A run folder serves without the trainer: inference weights with EMA applied, tokenizer assets
copied in, the optimizer code never imported, and old run folders told how to convert."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, garden, sets

from garden.optimizers import build_optimizer
from garden.registry import TASKS
from garden.run import Run

TRAINER_MODULES = ("garden.optimizers", "garden.train.precision", "garden.train.trainer")

# Runs `garden` commands in one process whose import system refuses the trainer's modules.
WITHOUT_TRAINER = f"""
import json, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name in {TRAINER_MODULES!r}:
            raise ImportError(name + " may not be imported")
sys.meta_path.insert(0, Refuse())
from garden.cli import main
for command in sys.argv[1:]:
    code = main(json.loads(command))
    print("exit", code, flush=True)
    if code:
        sys.exit(code)
print("loaded", sorted(m for m in {TRAINER_MODULES!r} if m in sys.modules))
"""


def without_trainer(*commands):
    arguments = [json.dumps([str(a) for a in command]) for command in commands]
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TRAINER, *arguments], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "loaded []"
    return result.stdout


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    """A tiny MNIST run that keeps EMA weights (decay 0.9, so they differ from the raw weights)."""
    run_dir = tmp_path_factory.mktemp("ema") / "run"
    steps = ["trainer.train_steps=100", "trainer.validation_interval=100", "trainer.checkpoint_interval=50"]
    garden(
        "train", "mnist_resnet", *sets(*steps, "trainer.optimizer_config.ema.average_decay=0.9"), "--run-dir", run_dir
    )
    return run_dir


def test_inference_weights_are_the_optimizers_moving_averages(ema_run):
    """RUN/model holds the moving averages that Keras's optimizer keeps in the training checkpoint
    (restored here into a fresh model and optimizer), not the raw weights."""
    run = Run(str(ema_run))
    config = run.config
    model = TASKS.get(config.task.type)(config.task).build_model()
    optimizer = build_optimizer(config.trainer.optimizer_config)
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    checkpoint.restore(str(ema_run / "checkpoints" / "ckpt-100")).expect_partial()
    raw = [v.numpy() for v in model.trainable_variables]
    optimizer.finalize_variable_values(model.trainable_variables)
    for loaded, averaged in zip(run.model.trainable_variables, model.trainable_variables):
        np.testing.assert_array_equal(loaded.numpy(), averaged.numpy())
    assert max(np.abs(a - b.numpy()).max() for a, b in zip(raw, run.model.trainable_variables)) > 1e-3
    assert run.step == 100


def test_eval_and_export_run_without_the_optimizer_code(ema_run, tmp_path):
    """Evaluation gives the validation metrics the trainer logged with its EMA weights; export
    verifies and writes a SavedModel; neither imports the trainer, optimizer or precision code."""
    output = without_trainer(
        ["eval", ema_run], ["export", ema_run, "--out", tmp_path / "export", "--format", "saved_model"]
    )
    logged = [json.loads(line) for line in (ema_run / "metrics.jsonl").read_text().splitlines()]
    trained = [entry for entry in logged if entry["split"] == "validation"][-1]
    evaluated = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    assert evaluated["step"] == trained["step"] == 100
    assert evaluated["accuracy"] == trained["accuracy"] and evaluated["loss"] == pytest.approx(trained["loss"], 1e-6)
    assert (tmp_path / "export" / "saved_model" / "saved_model.pb").is_file()


def test_an_old_run_folder_is_told_how_to_write_its_inference_weights(tiny_run, tmp_path):
    """A run from before RUN/model/ gets one line naming the command, and that command (training
    no further) writes weights equal to the newest checkpoint's."""
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    shutil.rmtree(old / "model")
    result = garden("eval", old, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "no inference weights" in result.stderr and f"--run-dir {old}" in result.stderr
    garden("train", "--config", old / "config.yaml", "--run-dir", old)
    assert sorted(p.name for p in (old / "checkpoints").glob("ckpt-*.index"))[-1] == "ckpt-300.index"
    converted, original = Run(str(old)), Run(str(tiny_run))
    for a, b in zip(converted.model.weights, original.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_sentencepiece_language_model_generates_after_its_corpus_and_cache_are_gone(tmp_path, monkeypatch):
    """shakespeare_lm trains its tokenizer into the cache from the training corpus; its run folder
    keeps a copy, so generation needs neither once the cache is removed."""
    monkeypatch.setenv("GARDEN_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "lm"
    steps = [
        "trainer.train_steps=20",
        "trainer.optimizer_config.warmup.linear.warmup_steps=1",
        "trainer.steps_per_loop=10",
        "trainer.validation_interval=20",
        "trainer.checkpoint_interval=20",
        "task.validation_data.num_examples=4",
        "task.model.backbone.params.vocabulary_size=400",
        "task.model.backbone.params.num_layers=1",
        "task.model.backbone.params.hidden_dim=32",
        "task.model.backbone.params.intermediate_dim=64",
    ]
    garden("train", "shakespeare_lm", *[a for s in steps for a in ("--set", s)], "--run-dir", run_dir)
    command = ["generate", run_dir, "--prompt", "ROMEO:", "--max-new-tokens", "12", "--seed", "3"]
    before = garden(*command).stdout
    shutil.rmtree(tmp_path / "cache")
    assert "exit 0" in without_trainer(command)
    assert garden(*command).stdout == before and before.startswith("ROMEO:")
