"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy."""

import json
import os
import socket
import subprocess
import sys

from conftest import ROOT, sets


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_identical_weights_and_only_the_chief_writes(tmp_path):
    hosts = [f"127.0.0.1:{p}" for p in free_ports(2)]
    run_dir = tmp_path / "run"
    processes, temp_dirs = [], []
    for index in range(2):
        temp_dirs.append(tmp_path / f"tmp{index}")
        temp_dirs[-1].mkdir()
        env = {**os.environ, "TMPDIR": str(temp_dirs[-1]),
               "TF_CONFIG": json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})}
        command = [sys.executable, "-m", "garden.cli", "train", "mnist_resnet",
                   *sets("runtime.distribution_strategy=multi_worker_mirrored", "trainer.train_steps=100",
                         "trainer.validation_interval=100", "task.train_data.num_examples=1024"),
                   "--run-dir", str(run_dir)]
        processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    prints = [[l.split()[-1] for l in out.splitlines() if "weights fingerprint" in l] for out, _ in outputs]
    assert len(prints[0]) == 1 and prints[0] == prints[1]
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.index")) == ["ckpt-100.index"]
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["split"] == "train"] == [50, 100]  # one writer, not two
    assert not any(temp_dirs[1].iterdir()), "the worker's temporary checkpoints were not removed"
