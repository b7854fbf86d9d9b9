"""One writer per run folder: a second `garden train`, `export`, `quantize` or `distill` on a folder a
trainer holds is refused in one line naming the holder; readers share a folder; a lock whose holder
was SIGKILLed is taken over; a sweep passes SIGTERM on to its trainers and waits for them."""

import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from conftest import ROOT, SMALL, garden, sets

from garden.errors import GardenError
from garden.run_folder import LOCK, FolderLock, RunFolder


def wait_for(condition, process, what, seconds=300):
    deadline = time.time() + seconds
    while not condition():
        assert process.poll() is None, f"the process ended before {what}"
        assert time.time() < deadline, f"no {what} in {seconds} s"
        time.sleep(0.05)


def test_a_second_writer_is_refused_naming_the_first_and_a_killed_ones_lock_is_taken_over(tmp_path):
    """The fault: two `garden train` on one --run-dir both ran, metrics.jsonl got each step twice and
    the first reported a result whose weights the second had overwritten."""
    run_dir = tmp_path / "run"
    # far more steps than it takes while the other commands start: it is killed holding the folder
    train = ["train", "mnist_resnet", *sets(*SMALL, "trainer.train_steps=1000000"), "--run-dir", run_dir]
    first = subprocess.Popen(
        [sys.executable, "-m", "garden.cli", *map(str, train)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state = run_dir / "checkpoints" / "checkpoint"
        wait_for(lambda: state.exists() and "ckpt-10" in state.read_text(), first, "checkpoint ckpt-10")
        holder = f"'garden train' (PID {first.pid} on {socket.gethostname()}, since "
        for command in (train, ["export", run_dir], ["quantize", run_dir, "--mode", "int8", "--out", tmp_path / "q"]):
            refused = garden(*command, check=False)
            assert refused.returncode == 2 and refused.stdout == "", refused.stdout
            line = refused.stderr.strip()
            assert "\n" not in line and line.startswith(f"garden: error: {run_dir} is in use by {holder}"), line
            assert line.endswith("wait for it to end or stop it, or pass --run-dir another folder")
        assert not (tmp_path / "q").exists() and not (run_dir / "export").exists()
        assert first.poll() is None  # it held the folder all along
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (run_dir / LOCK).exists()  # killed holding it: its name stays in the file

    last = int(state.read_text().split('"ckpt-')[1].split('"')[0])  # the newest checkpoint
    resumed = garden(*train[:-2], "--set", f"trainer.train_steps={last + 10}", "--run-dir", run_dir).stdout
    assert f"{run_dir}: took over the lock of {holder}" in resumed
    assert "which ended without releasing it" in resumed and "resumed from" in resumed
    assert not (run_dir / LOCK).exists()  # a writer that ends removes it
    assert garden("export", run_dir, "--out", tmp_path / "export").returncode == 0  # nobody holds it now


def test_readers_share_a_folder_and_keep_its_writer_out(tmp_path):
    folder = RunFolder(tmp_path)
    with folder.lock("export", shared=True), folder.lock("quantize", shared=True):
        with pytest.raises(GardenError, match="is in use by another garden command reading it"):
            folder.lock("train")
    with folder.lock("train") as writer:
        assert writer.left_by is None
        with pytest.raises(GardenError, match=rf"is in use by 'garden train' \(PID {os.getpid()} "):
            folder.lock("export", shared=True)
        with pytest.raises(GardenError, match=rf"is in use by 'garden train' \(PID {os.getpid()} "):
            folder.lock("train")
    assert os.listdir(tmp_path) == []  # the lock file goes with its last holder


def test_a_lock_that_made_its_folder_removes_it_when_nothing_was_written(tmp_path):
    """A refused command leaves no trace, though the lock made the folders on the way to it."""
    with FolderLock(str(tmp_path / "a" / "b" / "c"), "export", flag="--out"):
        assert (tmp_path / "a" / "b" / "c" / LOCK).is_file()
    assert os.listdir(tmp_path) == []
    run_dir = tmp_path / "x" / "run"
    quantized = sets("task.model.quantization=int8")  # refused by the trainer, after it took the lock
    refused = garden("train", "mnist_resnet", *quantized, "--run-dir", run_dir, check=False)
    assert refused.returncode == 2 and "holds the backbone's weights quantized, and they cannot train" in refused.stderr
    assert os.listdir(tmp_path) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(GardenError, match=r"cannot write to .*file/run \(Not a directory\); pass --run-dir a folder"):
        RunFolder(tmp_path / "file" / "run").lock("train")


def test_a_stopped_sweep_stops_its_trainers_and_leaves_their_trials_to_resume(tmp_path):
    """The fault: a sweep killed by SIGTERM left its trainer running, and the rerun started a second
    trainer on the same trial folder. Now the sweep passes SIGTERM on, the trainer checkpoints and
    stops, and the trial stays unfinished in the study for the rerun to resume (test_sweep.py resumes one)."""
    space = tmp_path / "space.yaml"
    space.write_text("metric: accuracy\nsampler: random\nparams:\n  trainer.train_steps: {choices: [400]}\n")
    sweep_dir = tmp_path / "sweep"
    args = ["sweep", "mnist_resnet", "--space", space, "--trials", 1, "--sweep-dir", sweep_dir, *sets(*SMALL)]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "garden.cli", *map(str, args)], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    trial = sweep_dir / "trial-000"
    state = trial / "checkpoints" / "checkpoint"
    wait_for(lambda: state.exists() and "ckpt-10" in state.read_text(), sweep, "checkpoint ckpt-10")
    trainer_pid = int((trial / LOCK).read_text().split('"pid": ')[1].split(",")[0])
    sweep.send_signal(signal.SIGTERM)  # to the sweep alone, as a scheduler sends it
    _, stderr = sweep.communicate(timeout=300)
    assert sweep.returncode == 143  # as every command stopped by SIGTERM
    assert stderr.strip().splitlines()[-1] == (
        "garden: stopped by SIGTERM: trials 0 wrote a checkpoint and stopped; run the same command to resume them"
    )
    with pytest.raises(ProcessLookupError):
        os.kill(trainer_pid, 0)  # the trainer ended with the sweep
    assert "by SIGTERM (preemption) after writing checkpoint" in (sweep_dir / "trial-000.log").read_text()
    study = optuna.load_study(study_name="garden", storage=f"sqlite:///{sweep_dir / 'study.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING]
    assert not (trial / LOCK).exists() and not (sweep_dir / LOCK).exists()


def test_a_resumed_run_names_changed_settings_keeps_each_config_and_refuses_another_model(tiny_run, tmp_path):
    """The fault: a hand-edited config.yaml was used on resume without a word and overwrote the
    record of the original; an edited model size was refused with advice to remove a good checkpoint."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    original = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert yaml.safe_load((run_dir / "configs" / "step-0.yaml").read_text()) == original
    edited = copy.deepcopy(original)
    edited["trainer"]["train_steps"] = 350
    edited["trainer"]["optimizer_config"]["learning_rate"]["cosine"]["initial_learning_rate"] = 0.0005
    (run_dir / "config.yaml").write_text(yaml.safe_dump(edited))
    printed = garden("train", "--config", run_dir / "config.yaml", "--run-dir", run_dir).stdout
    rate = original["trainer"]["optimizer_config"]["learning_rate"]["cosine"]["initial_learning_rate"]
    assert (
        "changed settings from step 300: trainer.optimizer_config.learning_rate.cosine.initial_learning_rate: "
        f"{rate!r} -> 0.0005; trainer.train_steps: 300 -> 350 (config revision {run_dir / 'configs' / 'step-300.yaml'}"
    ) in printed
    assert yaml.safe_load((run_dir / "configs" / "step-0.yaml").read_text()) == original  # kept
    assert yaml.safe_load((run_dir / "configs" / "step-300.yaml").read_text()) == edited
    assert "changed settings" not in garden("train", "--config", run_dir / "config.yaml", "--run-dir", run_dir).stdout

    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    edited["task"]["model"]["backbone"]["params"]["stem_width"] = 8
    (run_dir / "config.yaml").write_text(yaml.safe_dump(edited))
    refused = garden("train", "--config", run_dir / "config.yaml", "--run-dir", run_dir, check=False)
    line = refused.stderr.strip()
    assert refused.returncode == 2 and "\n" not in line, line
    assert line.startswith(f"garden: error: {run_dir} holds a run of another model (")
    assert "task.model.backbone.params.stem_width: 16 -> 8" in line and "start a new run folder" in line
    assert "remove" not in line and sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == checkpoints
