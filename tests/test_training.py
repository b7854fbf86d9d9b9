"""Real training on MNIST slices and Shakespeare: accuracy, summaries, NaN guard, kill-and-resume,
preemption, determinism, gradient accumulation, mixed precision."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from conftest import ROOT, TINY, garden, sets, train_killed_after
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from garden.errors import GardenError
from garden.resolve import experiment_config
from garden.train.strategy import resolve_strategy
from garden.train.trainer import Trainer


def fingerprint(output):
    return [line.split()[-1] for line in output.splitlines() if "weights fingerprint" in line]


def checkpoint_values(run_dir, step):
    reader = tf.train.load_checkpoint(os.path.join(run_dir, "checkpoints", f"ckpt-{step}"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "save_counter" not in k}


def test_short_run_reaches_stated_accuracy(tiny_run):
    """300 steps on 4096 training images: at least 93% on 1000 test images (94.5% when written)."""
    result = json.loads(garden("eval", tiny_run, "--split", "test").stdout)
    assert result["step"] == 300
    assert result["accuracy"] >= 0.93, result


def test_run_writes_config_summaries_and_metrics(tiny_run):
    rows = [json.loads(line) for line in open(tiny_run / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["split"] == "train"] == [50, 100, 150, 200, 250, 300]
    assert [r["step"] for r in rows if r["split"] == "validation"] == [300]
    train = EventAccumulator(str(tiny_run / "summaries" / "train")).Reload()
    assert {"loss", "learning_rate", "examples_per_second"} <= set(train.Tags()["tensors"])
    losses = [tf.make_ndarray(e.tensor_proto) for e in train.Tensors("loss")]
    assert losses[-1] < losses[0]
    validation = EventAccumulator(str(tiny_run / "summaries" / "validation")).Reload()
    assert "accuracy" in validation.Tags()["tensors"]
    assert sorted(os.listdir(tiny_run / "checkpoints")) == sorted(
        ["checkpoint"] + [f"ckpt-{s}.{ext}" for s in (100, 200, 300) for ext in ("index", "data-00000-of-00001")]
    )
    saved = yaml.safe_load((tiny_run / "config.yaml").read_text())  # the resolved config, with the --set values
    assert saved["task"]["name"] == "mnist_resnet" and saved["trainer"]["train_steps"] == 300
    assert saved["task"]["model"]["backbone"]["params"]["stage_widths"] == [16, 32]
    assert (
        experiment_config(config_files=[tiny_run / "config.yaml"]).as_dict()
        == experiment_config("mnist_resnet", sets=TINY).as_dict()
    )


def test_killed_run_resumes_to_the_same_weights(tiny_run, tmp_path):
    """SIGKILL after a checkpoint, restart from the saved config.yaml: identical to the uninterrupted run."""
    run_dir = tmp_path / "killed"
    train_killed_after(100, run_dir, "--config", tiny_run / "config.yaml")
    assert not (run_dir / "checkpoints" / "ckpt-300.index").exists()
    resumed = garden("train", "--config", run_dir / "config.yaml", "--run-dir", run_dir)
    assert "resumed from" in resumed.stdout and "at step 300" not in resumed.stdout
    expected, actual = checkpoint_values(tiny_run, 300), checkpoint_values(run_dir, 300)
    assert expected.keys() == actual.keys() and len(expected) > 20
    for key in expected:
        np.testing.assert_array_equal(expected[key], actual[key], err_msg=key)


def test_sigterm_writes_a_checkpoint_and_the_rerun_resumes_to_the_same_weights(tiny_run, tmp_path):
    """A preemption notice mid-run, here while step 50 validates: a checkpoint at that step (not a
    loop later, which a grace period may not allow), a clear exit, and a rerun that loses and
    repeats no step (its weights equal the uninterrupted run's) and no validation."""
    run_dir = tmp_path / "preempted"
    command = [
        sys.executable,
        "-m",
        "garden.cli",
        "train",
        "--config",
        str(tiny_run / "config.yaml"),
        "--set",
        "trainer.validation_interval=50",
        "--run-dir",
        str(run_dir),
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, deadline = run_dir / "metrics.jsonl", time.time() + 300
    while not (metrics.exists() and '"train"' in metrics.read_text()) and time.time() < deadline:
        assert process.poll() is None, "training ended before the notice"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    stopped = int(err.split("stopped at step ")[1].split()[0]) if "stopped at step" in err else None
    assert process.returncode == 143 and stopped == 50, err[-2000:]  # the notice came as step 50 validated
    assert tf.train.latest_checkpoint(run_dir / "checkpoints").endswith(f"ckpt-{stopped}")
    resumed = garden("train", "--config", run_dir / "config.yaml", "--run-dir", run_dir)
    assert f"at step {stopped}" in resumed.stdout
    steps = [json.loads(line)["step"] for line in open(metrics) if '"train"' in line]
    assert steps == list(range(50, 301, 50))  # each loop logged once: none lost, none repeated
    validated = [json.loads(line)["step"] for line in open(metrics) if '"validation"' in line]
    assert validated[-5:] == list(range(100, 301, 50)) and validated[:-5] in ([], [50])  # none repeated
    expected, actual = checkpoint_values(tiny_run, 300), checkpoint_values(run_dir, 300)
    for key in expected:
        np.testing.assert_array_equal(expected[key], actual[key], err_msg=key)


LM = [
    "trainer.train_steps=20",
    "trainer.steps_per_loop=10",
    "trainer.checkpoint_interval=20",
    "trainer.validation_interval=20",
    "task.validation_data.num_examples=48",
    "task.model.backbone.params.num_layers=1",
    "runtime.deterministic=true",
]


def lm_run(run_dir, *overrides):
    garden("train", "shakespeare_char", *[a for s in (*LM, *overrides) for a in ("--set", s)], "--run-dir", run_dir)
    return checkpoint_values(run_dir, 20)


def test_deterministic_runs_are_bit_identical_and_accumulated_micro_batches_match_the_full_batch(tmp_path):
    full = lm_run(tmp_path / "full", "task.train_data.global_batch_size=16")
    again = lm_run(tmp_path / "again", "task.train_data.global_batch_size=16")
    accumulated = lm_run(
        tmp_path / "accumulated", "task.train_data.global_batch_size=16", "trainer.gradient_accumulation_steps=4"
    )
    weights = [k for k in full if k.startswith("optimizer/_trainable_variables/")]  # the model's weights
    assert len(weights) > 5
    for key in full:
        np.testing.assert_array_equal(full[key], again[key], err_msg=key)
    for key in weights:  # four micro-batches of 4 sum to the gradient of the batch of 16, up to rounding
        np.testing.assert_allclose(accumulated[key], full[key], rtol=1e-4, atol=1e-5, err_msg=key)
    config = experiment_config("shakespeare_char", sets=["trainer.gradient_accumulation_steps=5"])
    with pytest.raises(GardenError) as refused:  # in this process: the message is the CLI's line
        Trainer(config, str(tmp_path / "bad"), resolve_strategy(config.runtime)).train()
    assert "split evenly into trainer.gradient_accumulation_steps (5)" in str(refused.value)
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "nan"
    result = garden(
        "train",
        "mnist_resnet",
        *sets(
            "trainer.train_steps=200",
            "trainer.checkpoint_interval=50",
            "trainer.optimizer_config.learning_rate="
            "{type: stepwise, stepwise: {boundaries: [100], values: [0.001, 1.0e+30]}}",
            "trainer.optimizer_config.warmup.type=null",
        ),
        "--run-dir",
        run_dir,
        check=False,
    )
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "loss became nan by step 150" in message and message.endswith("set global_clipnorm")
    assert "ckpt-100" in message and "Traceback" not in result.stderr
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.index")) == ["ckpt-100.index", "ckpt-50.index"]


def test_corrupt_checkpoint_is_a_clear_error(tiny_run, tmp_path):
    run_dir = tmp_path / "corrupt"
    shutil.copytree(tiny_run, run_dir)
    for folder, command in (
        ("model", ("eval", run_dir)),  # the inference weights
        ("checkpoints", ("train", "--config", run_dir / "config.yaml", "--run-dir", run_dir)),  # the trainer's state
    ):
        data = run_dir / folder / "ckpt-300.data-00000-of-00001"
        data.write_bytes(data.read_bytes()[:1000])
        result = garden(*command, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert (
            result.stderr.strip()
            .splitlines()[-1]
            .startswith(f"garden: error: checkpoint {run_dir}/{folder}/ckpt-300 is unreadable")
        )


SHORT = [  # 40 steps of the tiny ResNet at a constant rate
    *[s for s in TINY if not s.startswith("trainer.")],
    "trainer.train_steps=40",
    "trainer.steps_per_loop=10",
    "trainer.checkpoint_interval=40",
    "trainer.validation_interval=40",
    "task.train_data.num_examples=1280",
    "task.validation_data.num_examples=200",
    "trainer.optimizer_config.warmup.type=null",
    "trainer.optimizer_config.learning_rate={type: constant, constant: {learning_rate: 0.005}}",
]


def short_run(run_dir, *overrides):
    """SHORT in this process; returns the trainer, its results and its train losses."""
    config = experiment_config("mnist_resnet", sets=[*SHORT, *overrides])
    trainer = Trainer(config, str(run_dir), resolve_strategy(config.runtime))
    results = trainer.train()
    losses = [json.loads(line)["loss"] for line in open(run_dir / "metrics.jsonl") if '"train"' in line]
    return trainer, results, losses


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mixed_precision_trains_with_float32_logits(dtype, tmp_path):
    try:
        # batch 32: this CPU emulates float16 convolutions, at several times the cost of float32 ones
        trainer, results, losses = short_run(
            tmp_path, f"runtime.mixed_precision_dtype={dtype}", "task.train_data.global_batch_size=32"
        )
    finally:
        keras.config.set_dtype_policy("float32")
    assert trainer.model.get_layer("backbone").layers[1].compute_dtype == dtype
    assert trainer.model.outputs[0].dtype == "float32"
    assert type(trainer.optimizer).__name__ == ("LossScaleOptimizer" if dtype == "float16" else "AdamW")
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]  # learning, from chance level (2.3)
    assert np.isfinite(results["loss"])


def test_mirrored_strategy_steps_like_one_device_and_learns(tmp_path):
    """`mirrored` (here over the one CPU) runs tf.distribute's replica step and all-reduce: its first
    steps match the one-device run's up to float rounding (which 40 Adam steps on a small ResNet grow
    past any fixed bound), and a 40-step run learns."""
    two_steps = ["trainer.train_steps=2", "trainer.steps_per_loop=1", "trainer.checkpoint_interval=2"]
    two_steps.append("trainer.validation_interval=2")
    one_device, _, losses = short_run(tmp_path / "one_device", *two_steps)
    mirrored, _, mirrored_losses = short_run(
        tmp_path / "mirrored", "runtime.distribution_strategy=mirrored", *two_steps
    )
    assert isinstance(mirrored.strategy, tf.distribute.MirroredStrategy)
    np.testing.assert_allclose(mirrored_losses, losses, rtol=1e-5)
    for expected, given in zip(one_device.model.weights, mirrored.model.weights):
        np.testing.assert_allclose(given.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5, err_msg=expected.path)
    _, results, losses = short_run(tmp_path / "mirrored_40", "runtime.distribution_strategy=mirrored")
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0] and np.isfinite(results["loss"])


def test_xla_compiled_steps_train(tmp_path):
    """With enable_xla the gradient step is compiled by XLA (its HLO modules, dumped by XLA itself,
    show it ran; none without it) and the run still learns."""
    dumps = {}
    for xla in (True, False):
        dumps[xla] = tmp_path / f"hlo_{xla}"
        overrides = [*SHORT, f"runtime.enable_xla={str(xla).lower()}"]
        subprocess.run(
            [sys.executable, "-m", "garden.cli", "train", "mnist_resnet", *[a for s in overrides for a in ("--set", s)]]
            + ["--run-dir", str(tmp_path / f"run_{xla}")],
            cwd=ROOT,
            env={**os.environ, "XLA_FLAGS": f"--xla_dump_to={dumps[xla]}"},
            check=True,
            capture_output=True,
            timeout=600,
        )
    compiled = [p.name for p in dumps[True].glob("*.txt")] if dumps[True].exists() else []
    assert any("gradients" in name for name in compiled), compiled
    assert not dumps[False].exists() or not any("gradients" in p.name for p in dumps[False].glob("*.txt"))
    rows = [json.loads(line) for line in open(tmp_path / "run_True" / "metrics.jsonl")]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]  # learning, from chance level (2.3)


def test_resuming_with_another_model_names_the_changed_keys_and_keeps_the_checkpoints(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    result = garden(
        "train",
        "--config",
        run_dir / "config.yaml",
        "--set",
        "task.model.backbone.params.stem_width=8",
        "--run-dir",
        run_dir,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"garden: error: {run_dir} holds a run of another model")
    assert "task.model.backbone.params.stem_width: 16 -> 8" in message and "its checkpoints are kept" in message
    assert "remove" not in message and sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before
