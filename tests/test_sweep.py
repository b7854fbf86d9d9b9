"""garden sweep: trials trained in their own folders, resumed after a kill, the best config kept;
space files that cannot run refused in one line."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import ROOT, SMALL, garden, validations

SWEPT = [*SMALL, "task.train_data.num_examples=1280", "trainer.train_steps=20", "trainer.validation_interval=20"]


def test_a_sweep_trains_each_trial_resumes_after_a_kill_and_keeps_the_best_config(tmp_path):
    space = tmp_path / "space.yaml"
    rates = [0.001, 0.01]
    space.write_text(
        "metric: accuracy\nsampler: grid\nparams:\n"
        f"  trainer.optimizer_config.learning_rate.constant.learning_rate: {{choices: {rates}}}\n"
    )
    sweep_dir = tmp_path / "sweep"
    constant = "trainer.optimizer_config.learning_rate={type: constant, constant: {learning_rate: 0.005}}"
    args = ["sweep", "mnist_resnet", "--space", space, "--trials", 2, "--sweep-dir", sweep_dir]
    args += [a for s in (*SWEPT, constant) for a in ("--set", s)]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "garden.cli", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    state, deadline = sweep_dir / "trial-000" / "checkpoints" / "checkpoint", time.time() + 300
    while not (state.exists() and "ckpt-10" in state.read_text()) and time.time() < deadline:
        assert sweep.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.05)
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep and its trial's training
    sweep.wait()

    output = garden(*args, "--parallel", 2).stdout
    assert "resuming trials 0 in their folders" in output
    assert "resumed from" in (sweep_dir / "trial-000.log").read_text()
    trials = {}
    for number in (0, 1):
        run_dir = sweep_dir / f"trial-{number:03d}"
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        rate = config["trainer"]["optimizer_config"]["learning_rate"]["constant"]["learning_rate"]
        trials[rate] = (number, validations(run_dir)[20])  # the value is the trial's own last validation
        assert f"trial {number}: accuracy {validations(run_dir)[20]:.6g}" in output
    assert sorted(trials) == rates  # the grid, each point once
    best_number, best_accuracy = max(trials.values(), key=lambda t: t[1])
    table = [line.split() for line in output.splitlines() if line.split() and line.split()[0] in ("0", "1")]
    assert [int(row[0]) for row in table][0] == best_number and float(table[0][1]) == pytest.approx(best_accuracy)
    best = sweep_dir / "best.yaml"
    assert best.read_text() == (sweep_dir / f"trial-{best_number:03d}" / "config.yaml").read_text()
    assert f"best: trial {best_number}" in output and f"--config {best}" in output


@pytest.mark.parametrize(
    "space, message",
    [
        ("metric: accuracy\nparams: {trainer.train_step: {choices: [1, 2]}}", "did you mean 'trainer.train_steps'"),
        ("metric: accuracy\nmode: max\nparams: {trainer.train_steps: {choices: [1]}}", "mode is 'higher' or 'lower'"),
        ("params: {trainer.train_steps: {choices: [1]}}", "set 'metric' to the validation metric"),
        ("metric: loss\nparams: {trainer.train_steps: {low: 5, high: 1}}", "low must be a number below high"),
        ("metric: loss\nsampler: grid\nparams: {task.l2_weight_decay: {low: 0.0, high: 1.0}}", "grid needs choices"),
        ("metric: loss\nsamplr: tpe\nparams: {}", "unknown key 'samplr'; did you mean 'sampler'"),
    ],
)
def test_a_sweep_space_that_cannot_run_is_one_line(tmp_path, space, message):
    (tmp_path / "space.yaml").write_text(space)
    result = garden(
        "sweep",
        "mnist_resnet",
        "--space",
        tmp_path / "space.yaml",
        "--trials",
        1,
        "--sweep-dir",
        tmp_path / "sweep",
        check=False,
    )
    assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_a_metric_validation_does_not_report_stops_the_sweep_at_its_first_validation(tmp_path):
    """The fault: `metric: acurracy` trained a whole trial, then every other, and the sweep exited 0."""
    space = tmp_path / "space.yaml"
    space.write_text(
        "metric: acurracy\nparams:\n  trainer.optimizer_config.learning_rate.constant.learning_rate: "
        "{choices: [0.001, 0.01]}\n"
    )
    sweep_dir = tmp_path / "sweep"
    steps = [*SMALL, "trainer.train_steps=200", "trainer.validation_interval=10"]
    args = ["sweep", "mnist_resnet", "--space", space, "--trials", 2, "--sweep-dir", sweep_dir]
    result = garden(*args, *[a for s in steps for a in ("--set", s)], check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "garden: error: validation does not report 'acurracy'; did you mean 'accuracy'? (trial 0's validation); "
        f"fix 'metric' in {space} and start again with a new --sweep-dir"
    )
    assert max(validations(sweep_dir / "trial-000")) < 200  # stopped, not trained to the end
    assert not (sweep_dir / "trial-001").exists()
