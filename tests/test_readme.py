"""The README's plugin example works as written: its module registers a backbone and an experiment
that `garden --import` trains."""

import json
import re
import subprocess
import sys

from conftest import ROOT


def test_readme_plugin_example_registers_and_trains(tmp_path):
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    (tmp_path / "my_parts.py").write_text(code)
    steps = [
        "trainer.train_steps=20",
        "trainer.steps_per_loop=10",
        "trainer.optimizer_config.warmup.linear.warmup_steps=5",
        "trainer.checkpoint_interval=20",
        "trainer.validation_interval=20",
        "task.train_data.num_examples=640",
        "task.validation_data.num_examples=500",
    ]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "garden.cli",
            "--import",
            "my_parts",
            "train",
            "mnist_mlp",
            *[a for s in steps for a in ("--set", s)],
            "--run-dir",
            tmp_path / "run",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["accuracy"] > 0.5  # 20 steps from 10% at chance
    assert (tmp_path / "run" / "model" / "ckpt-20.index").is_file()
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "type: mlp" in config and "widths: [512]" in config and "imports: [my_parts]" in config
