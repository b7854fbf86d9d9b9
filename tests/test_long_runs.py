"""What long runs need: the best checkpoint, early stopping, rollback on divergence and continuous
evaluation, on real MNIST; each checked against the run's own metrics.jsonl and a re-evaluation of
the kept weights."""

import gzip
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import yaml
from conftest import ROOT, SMALL, garden, validations
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from garden.data.catalog import fetch
from garden.data.mnist import SOURCE
from garden.errors import GardenError
from garden.resolve import experiment_config
from garden.train.continuous_eval import watch
from garden.train.strategy import resolve_strategy
from garden.train.trainer import Trainer
from garden.train.watch import stale_validations


def train(run_dir, *overrides):
    """Trains SMALL + `overrides` in this process; returns (trainer, results)."""
    config = experiment_config("mnist_resnet", sets=[*SMALL, *overrides])
    trainer = Trainer(config, str(run_dir), resolve_strategy(config.runtime))
    return trainer, trainer.train()


def test_early_stopping_after_a_learning_rate_spike_keeps_the_best_weights(tmp_path, capsys):
    run_dir = tmp_path / "spiked"
    spiked = [
        "task.train_data.num_examples=1280",
        "trainer.train_steps=200",
        "trainer.optimizer_config.learning_rate={type: stepwise, stepwise: {boundaries: [50], values: [0.005, 0.5]}}",
        "trainer.best_checkpoint_eval_metric=accuracy",
        "trainer.early_stopping.metric=accuracy",
        "trainer.early_stopping.patience=3",
    ]
    trainer, _ = train(run_dir, *spiked)
    accuracy = validations(run_dir)
    best_step, expected_stop = stop_by_hand(accuracy, patience=3)
    assert expected_stop is not None and expected_stop < 200, accuracy  # the spike ruined the run
    assert max(accuracy) == expected_stop and int(trainer.step.numpy()) == expected_stop
    info = json.loads((run_dir / "best" / "info.json").read_text())
    assert info["best_ckpt_global_step"] == best_step and info["accuracy"] == accuracy[best_step]
    assert sorted(p.name for p in (run_dir / "best").glob("ckpt-*.index")) == [f"ckpt-{best_step}.index"]

    # eval reads the best weights by default and says so; re-evaluated, they give the recorded accuracy
    result = garden("eval", run_dir)
    assert json.loads(result.stdout)["accuracy"] == accuracy[best_step]
    assert f"weights: best checkpoint (step {best_step}, validation accuracy" in result.stderr
    latest = json.loads(garden("eval", run_dir, "--checkpoint", "latest").stdout)
    assert (latest["step"], latest["accuracy"]) == (expected_stop, accuracy[expected_stop])
    refused = garden("eval", run_dir, "--checkpoint", "3", check=False)
    assert refused.returncode == 2 and "holds the weights of steps" in refused.stderr

    # continuous evaluation ends with the run: the last checkpoint's early-stopping count says it stopped
    said = []
    evaluated = watch(str(run_dir), "validation", timeout=60, poll_seconds=0.1, say=said.append)
    assert evaluated[-1]["step"] == expected_stop and said == []  # not by waiting out its timeout
    assert stale_validations(str(run_dir / "checkpoints" / f"ckpt-{expected_stop}")) == 3

    # started again, the run does nothing and says why
    lines = len(open(run_dir / "metrics.jsonl").readlines())
    capsys.readouterr()
    trainer, results = train(run_dir, *spiked)
    assert results == {} and int(trainer.step.numpy()) == expected_stop
    assert f"nothing to do: stopped early at step {expected_stop}" in capsys.readouterr().out
    assert len(open(run_dir / "metrics.jsonl").readlines()) == lines
    # with more patience, it trains on, counting the validations it had not improved in before
    trainer, _ = train(run_dir, *spiked, "trainer.early_stopping.patience=4")
    accuracy = validations(run_dir)
    assert min(accuracy) == 10 and max(accuracy) > expected_stop
    assert int(trainer.step.numpy()) == (stop_by_hand(accuracy, patience=4)[1] or max(accuracy))  # or to its end


def stop_by_hand(accuracy: dict, patience: int) -> tuple:
    """(best step, stop step): the first validation after which `patience` in a row do not beat the best so far."""
    best_step, stale = None, 0
    for step in sorted(accuracy):
        if best_step is None or accuracy[step] > accuracy[best_step]:
            best_step, stale = step, 0
        else:
            stale += 1
        if stale == patience:
            return best_step, step
    return best_step, None


def mnist_with_a_bad_image(path, bad_index):
    """An MNIST pickle of 2,560 training images in the catalog's layout, one of them 1e30 bright."""
    with gzip.open(fetch(SOURCE), "rb") as f:
        (train_x, train_y), validation, test = pickle.load(f, encoding="latin1")
    train_x = np.array(train_x[:2560])
    train_x[bad_index] = 1e30
    with gzip.open(path, "wb") as f:
        pickle.dump(((train_x, train_y[:2560]), validation, test), f)
    return path


@pytest.mark.parametrize("bad_index", [1234])
def test_a_diverged_loop_rolls_back_and_reads_on_past_the_bad_batch_and_resumes_exactly(tmp_path, capsys, bad_index):
    data = mnist_with_a_bad_image(tmp_path / "mnist.pkl.gz", bad_index)
    poisoned = [
        f"task.train_data.input_path={data}",
        "trainer.steps_per_loop=5",
        "trainer.checkpoint_interval=5",
        "trainer.recovery_max_trials=2",
        "trainer.optimizer_config.learning_rate={type: constant, constant: {learning_rate: 0.005}}",
    ]
    trainer, results = train(tmp_path / "a", *poisoned, "trainer.train_steps=40")
    output = capsys.readouterr().out
    rollbacks = [line for line in output.splitlines() if "rolled back to step" in line]
    # without reading on past the bad batch, every retry would meet it again and exhaust the trials
    assert 1 <= len(rollbacks) <= 2 and "loss became nan" in rollbacks[0]
    diverged_at = int(rollbacks[0].split(":")[0].split()[-1])
    assert diverged_at < 40, "pick another bad_index: this one is read in the last loop"
    assert all(np.isfinite(v.numpy()).all() for v in trainer.variables) and results["accuracy"] > 0.2  # chance: 0.1
    skipped = trainer.recovery.skipped.numpy()
    assert skipped[0] == 5 * len(rollbacks)

    # a run stopped after the rollback and resumed reads the same batches: the same weights
    train(tmp_path / "b", *poisoned, f"trainer.train_steps={diverged_at}")
    resumed, _ = train(tmp_path / "b", *poisoned, "trainer.train_steps=40")
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(trainer.variables, resumed.variables))


def test_a_learning_rate_spike_recovers_at_a_scaled_rate_and_otherwise_stops(tmp_path, capsys):
    spike = [
        "task.train_data.num_examples=1280",
        "trainer.train_steps=40",
        "trainer.loss_upper_bound=50",
        "trainer.optimizer_config.learning_rate={type: stepwise, stepwise: {boundaries: [20], values: [0.005, 20.0]}}",
    ]
    trainer, results = train(
        tmp_path / "scaled", *spike, "trainer.recovery_max_trials=1", "trainer.recovery_learning_rate_scale=0.001"
    )
    assert "learning rate x0.001" in capsys.readouterr().out
    assert int(trainer.step.numpy()) == 40 and results["accuracy"] > 0.2  # chance: 0.1
    assert float(trainer.optimizer.learning_rate) == pytest.approx(0.02)

    with pytest.raises(GardenError) as refused:
        train(tmp_path / "unscaled", *spike, "trainer.recovery_max_trials=1")
    message = str(refused.value)
    assert "rose above trainer.loss_upper_bound (50) by step 30 after 1 rollbacks" in message
    assert "the last good checkpoint is" in message and message.endswith("set global_clipnorm")


def test_eval_watch_evaluates_each_checkpoint_as_training_writes_it(tmp_path):
    run_dir = tmp_path / "watched"
    args = [a for s in (*SMALL, "task.train_data.num_examples=1280", "trainer.train_steps=40") for a in ("--set", s)]
    command = [sys.executable, "-m", "garden.cli", "train", "mnist_resnet", *args, "--set", "trainer.max_to_keep=10"]
    training = subprocess.Popen([*command, "--run-dir", str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    said = []
    try:  # started before the run
        evaluated = watch(str(run_dir), "validation", timeout=300, poll_seconds=0.2, say=said.append)
    finally:
        assert training.wait(timeout=300) == 0
    assert said == [f"waiting up to 300 s for the first checkpoint in {run_dir}/model/"]
    assert [r["step"] for r in evaluated] == [10, 20, 30, 40]
    for result in evaluated:  # the trainer's own validation of the same weights
        assert result["accuracy"] == pytest.approx(validations(run_dir)[result["step"]], abs=1e-9)
    events = EventAccumulator(str(run_dir / "summaries" / "eval_validation"))
    events.Reload()
    tensors = events.Tensors("accuracy")
    assert [t.step for t in tensors] == [10, 20, 30, 40]
    assert [float(tf.make_ndarray(t.tensor_proto)) for t in tensors] == pytest.approx(
        [r["accuracy"] for r in evaluated]
    )
    lines = [json.loads(line) for line in open(run_dir / "eval_validation.jsonl")]
    assert [line["step"] for line in lines] == [10, 20, 30, 40]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["trainer"].update(train_steps=80, continuous_eval_timeout=1)  # more to come, and a short wait for it
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    assert (
        garden("eval", run_dir, "--watch")
        .stdout.strip()
        .endswith(f"no new checkpoint in 1 s; stopped watching {run_dir}")
    )
