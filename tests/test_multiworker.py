"""Worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy: identical weights, one writer,
early stopping that every worker agrees on, and a job that loses a worker stops with a clear error
and resumes when every worker restarts."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, sets


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def launch(workers, run_dir, tmp_path, shards, *overrides):
    """Starts `workers` processes training mnist_resnet together on the TFRecord `shards`, streamed
    (shuffled and augmented); worker i's TMPDIR is tmp_path/tmp<i>."""
    hosts = [f"127.0.0.1:{p}" for p in free_ports(workers)]
    processes = []
    for index in range(workers):
        temp_dir = tmp_path / f"tmp{index}"
        temp_dir.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "TMPDIR": str(temp_dir),
            "TF_CONFIG": json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}),
        }
        command = [
            sys.executable,
            "-m",
            "garden.cli",
            "train",
            "mnist_resnet",
            *sets(
                "runtime.distribution_strategy=multi_worker_mirrored",
                f"task.train_data.input_path={shards}/*",
                *overrides,
            ),
            "--run-dir",
            str(run_dir),
        ]
        processes.append(
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    return processes


def finished(processes):
    """The stdout of each process, after asserting that all succeeded."""
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    return [out for out, _ in outputs]


def fingerprints(out):
    return [line.split()[-1] for line in out.splitlines() if "weights fingerprint" in line]


JOB = (
    "task.train_data.dataset=''",
    "task.train_data.num_examples=-1",
    "task.train_data.shuffle_buffer_size=100",
    "task.train_data.aug_crop=true",
    "task.train_data.aug_rand_hflip=true",
    "trainer.train_steps=150",
    "trainer.validation_interval=50",
    "trainer.checkpoint_interval=50",
    "task.train_data.global_batch_size=48",
    # accuracy cannot rise by 1.0: the second validation (step 100) stops the job, which every worker must agree on
    "trainer.early_stopping.metric=accuracy",
    "trainer.early_stopping.mode=higher",
    "trainer.early_stopping.patience=1",
    "trainer.early_stopping.min_delta=1.0",
)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, mnist_files):
    """(run folder, temp folders' parent, each worker's stdout) of one uninterrupted 2-worker job."""
    tmp_path = tmp_path_factory.mktemp("two_workers")
    return tmp_path / "run", tmp_path, finished(launch(2, tmp_path / "run", tmp_path, mnist_files[1], *JOB))


def test_two_workers_train_identical_weights_and_only_the_chief_writes(two_workers):
    run_dir, tmp_path, outputs = two_workers
    prints = [fingerprints(out) for out in outputs]
    assert len(outputs) == 2 and len(prints[0]) == 1 and prints[1] == prints[0]
    assert "stopped early at step 100" in outputs[0]  # both exited 0: the worker stopped at the chief's step
    assert "shared by file across 2 input pipelines" in outputs[0]
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.index")) == ["ckpt-100.index", "ckpt-50.index"]
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["split"] == "train"] == [50, 100]  # one writer, not several
    assert not any((tmp_path / "tmp1").iterdir()), "the worker's temporary checkpoints were not removed"


def test_a_lost_worker_stops_the_job_and_restarting_every_worker_resumes_it_exactly(two_workers, mnist_files, tmp_path):
    run_dir = tmp_path / "run"
    chief, worker = launch(2, run_dir, tmp_path, mnist_files[1], *JOB)
    state, deadline = run_dir / "checkpoints" / "checkpoint", time.time() + 300
    while not (state.exists() and "ckpt-50" in state.read_text()) and time.time() < deadline:
        assert chief.poll() is None, "training ended before a worker could be lost"
        time.sleep(0.05)
    worker.kill()
    _, err = chief.communicate(timeout=180)  # heartbeats stop; the collectives fail within about 10 s
    worker.communicate()
    assert chief.returncode == 2, err[-3000:]
    message = err.strip().splitlines()[-1]
    assert message.endswith(
        f"lost worker 1; restart every worker with the same command to resume from {run_dir}/checkpoints/ckpt-50"
    )
    outputs = finished(launch(2, run_dir, tmp_path, mnist_files[1], *JOB))
    assert "at step 50" in outputs[0] and fingerprints(outputs[0]) == fingerprints(
        two_workers[2][0]
    )  # none lost or repeated
