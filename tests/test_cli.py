"""The CLI's listing, YAML output and one-line errors for bad input."""

import yaml
from conftest import garden


def test_list_shows_the_registered_experiments():
    out = garden("list").stdout
    assert out.splitlines()[0].split() == ["experiment", "task", "backbone", "dataset", "description"]
    assert any(line.startswith("mnist_resnet") and "resnet" in line and "mnist" in line for line in out.splitlines())


def test_show_prints_the_resolved_config_as_yaml():
    config = yaml.safe_load(garden("show", "mnist_resnet", "--set", "trainer.train_steps=9").stdout)
    assert config["task"]["name"] == "mnist_resnet" and config["trainer"]["train_steps"] == 9
    assert config["trainer"]["optimizer_config"]["optimizer"]["type"] == "adamw"


def one_line_error(*args):
    result = garden(*args, check=False)
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("garden: error: "), result.stderr
    return lines[0]


def test_unknown_experiment():
    assert one_line_error("train", "mnist_resnets").endswith(
        "unknown experiment 'mnist_resnets'; did you mean 'mnist_resnet'?"
    )


def test_unknown_config_key():
    assert "did you mean 'trainer.steps_per_loop'" in one_line_error(
        "show", "mnist_resnet", "--set", "trainer.steps_per_lop=5"
    )


def test_missing_data_file(tmp_path):
    message = one_line_error(
        "train",
        "mnist_resnet",
        "--set",
        "task.train_data.input_path=/no/such/mnist.pkl.gz",
        "--run-dir",
        tmp_path / "run",
    )
    assert "data file not found: /no/such/mnist.pkl.gz" in message
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_eval_of_a_folder_that_is_not_a_run(tmp_path):
    assert "is not a run folder (no config.yaml)" in one_line_error("eval", tmp_path)


def test_tpu_strategy_without_a_tpu(tmp_path):
    message = one_line_error(
        "train", "mnist_resnet", "--set", "runtime.distribution_strategy=tpu", "--run-dir", tmp_path / "r"
    )
    assert "no TPU found for runtime.tpu=''" in message and "distribution_strategy=one_device" in message
    assert "unknown runtime.distribution_strategy 'mirored'; did you mean 'mirrored'?" in one_line_error(
        "train", "mnist_resnet", "--set", "runtime.distribution_strategy=mirored", "--run-dir", tmp_path / "r"
    )
