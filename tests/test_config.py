import re

import pytest
import yaml

from garden.config import parse_set
from garden.errors import GardenError
from garden.registry import TASKS
from garden.resolve import experiment_config
from garden.yaml_files import save_yaml, to_yaml


def test_set_overrides_parse_values_as_yaml():
    config = experiment_config(
        "mnist_resnet",
        sets=[
            "trainer.train_steps=7",
            "task.model.backbone.params.stage_widths=[8, 16]",
        ],
    )
    assert config.trainer.train_steps == 7
    assert list(config.task.model.backbone.params.stage_widths) == [8, 16]
    assert parse_set("a.b.c=0.5") == {"a": {"b": {"c": 0.5}}}
    assert parse_set("a.lr=2e-4") == {"a": {"lr": 2e-4}}  # YAML 1.1 alone would keep a string


def test_yaml_files_apply_in_order_then_sets(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("trainer: {train_steps: 11, steps_per_loop: 1}\n")
    second.write_text("trainer: {train_steps: 12}\n")
    config = experiment_config("mnist_resnet", [first, second])
    assert (config.trainer.train_steps, config.trainer.steps_per_loop) == (12, 1)
    config = experiment_config("mnist_resnet", [first, second], ["trainer.train_steps=13"])
    assert config.trainer.train_steps == 13


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("trainer.train_step=1", "unknown config key 'trainer.train_step'; did you mean 'trainer.train_steps'?"),
        ("task.model.backbone.params.stem_widht=8", "did you mean 'task.model.backbone.params.stem_width'?"),
        ("trainer.train_steps=many", "config key 'trainer.train_steps' expects a number, got 'many'"),
        ("runtime.deterministic=7", "expects true or false"),
        ("task.model.backbone.type=resnt", "unknown backbone 'resnt'; did you mean 'resnet'?"),
        ("trainer", "--set expects key=value"),
    ],
)
def test_bad_overrides_name_the_key_and_the_fix(assignment, message):
    with pytest.raises(GardenError, match=re.escape(message)):
        experiment_config("mnist_resnet", sets=[assignment])


def test_input_path_and_tfds_name_together_are_refused():
    with pytest.raises(GardenError, match="task.train_data sets both input_path and tfds_name; keep the one"):
        experiment_config(
            "image_classifier", sets=["task.train_data.tfds_name=mnist", "task.train_data.input_path=d/*"]
        )


@pytest.mark.parametrize(
    "assignment, message",
    [
        (
            "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=-0.1",
            "initial_learning_rate must be 0 or more, got -0.1",
        ),
        ("trainer.optimizer_config.learning_rate.cosine.decay_steps=0", "decay_steps must be positive, got 0"),
        ("trainer.train_steps=0", "trainer.train_steps must be positive, got 0"),
        ("trainer.steps_per_loop=0", "trainer.steps_per_loop must be positive, got 0"),
        ("trainer.train_steps=1.5", "config key 'trainer.train_steps' expects a whole number, got 1.5"),
        ("trainer.train_steps=null", "config key 'trainer.train_steps' expects a number, got None"),
        ("task.train_data.global_batch_size=-4", "task.train_data.global_batch_size must be positive, got -4"),
        ("task.train_data.num_examples=0", "task.train_data.num_examples must be positive, or -1 for every example"),
        ("trainer.max_to_keep=0", "trainer.max_to_keep must be positive, got 0"),
        ("task.model.tokenizer.sequence_length=0", "task.model.tokenizer.sequence_length must be positive, got 0"),
        (
            "trainer.optimizer_config.optimizer.adamw.beta_1=1.5",
            "trainer.optimizer_config.optimizer.adamw.beta_1 must be at least 0 and below 1, got 1.5",
        ),
        ("task.test_data.num_examples=-3", "task.test_data.num_examples must be positive, or -1 for every example"),
        (
            "trainer.optimizer_config.warmup.linear.warmup_steps=-5",
            "warmup.linear.warmup_steps must be positive, got -5",
        ),
        (
            "task.train_data.cache=true",
            "task.train_data.cache is a Model Garden key that Garden does not support yet",
        ),
        (
            "trainer.summary_interval=5",
            "trainer.summary_interval is a Model Garden key that Garden does not support yet",
        ),
        (
            "task.differential_privacy_config={clipping_norm: 1.0}",
            "task.differential_privacy_config is a Model Garden key",
        ),
        ("runtime.run_eagerly=true", "runtime.run_eagerly is a Model Garden key that Garden does not support yet"),
        ("trainer.best_checkpoint_metric_comp=max", "trainer.best_checkpoint_metric_comp is 'higher' or 'lower'"),
        ("trainer.early_stopping.patience=0", "trainer.early_stopping.patience must be positive, got 0"),
        ("trainer.recovery_learning_rate_scale=2", "trainer.recovery_learning_rate_scale must be in (0, 1]"),
        ("trainer.recovery_max_trials=-1", "trainer.recovery_max_trials must be 0 or more, got -1"),
    ],
)
def test_impossible_or_unsupported_settings_are_refused(assignment, message):
    """Values that cannot train, and Model Garden keys that Garden shows but does not read, are
    refused with one line; the same keys at their defaults (as a saved config.yaml holds them) pass."""
    with pytest.raises(GardenError, match=re.escape(message)):
        experiment_config("mnist_resnet", sets=[assignment])


def test_a_value_the_model_cannot_take_is_one_line_naming_its_keys():
    config = experiment_config("mnist_resnet", sets=["task.model.backbone.params.stem_width=-4"])
    message = "from task.model.backbone.params (Invalid value for argument `filters`. Expected a strictly positive"
    with pytest.raises(GardenError, match=r"cannot build backbone '\w+' " + re.escape(message)):
        TASKS.get(config.task.type)(config.task).build_models()


def test_the_best_checkpoint_folder_must_be_a_new_folder_of_the_run():
    with pytest.raises(GardenError, match="trainer.best_checkpoint_export_subdir must name a new folder of the run"):
        experiment_config(
            "mnist_resnet",
            sets=["trainer.best_checkpoint_eval_metric=accuracy", "trainer.best_checkpoint_export_subdir=model"],
        )


def test_whole_floats_become_integers_and_unread_keys_at_their_defaults_pass():
    config = experiment_config(
        "mnist_resnet",
        sets=["trainer.train_steps=1e3", "trainer.summary_interval=1000", "task.train_data.tfds_name=''"],
    )
    assert config.trainer.train_steps == 1000 and isinstance(config.trainer.train_steps, int)


def test_unknown_experiment_suggests_the_closest():
    with pytest.raises(GardenError, match="unknown experiment 'mnist_resnett'; did you mean 'mnist_resnet'"):
        experiment_config("mnist_resnett")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(GardenError, match="config file not found: .*nope.yaml"):
        experiment_config("mnist_resnet", [tmp_path / "nope.yaml"])


def test_resolved_config_is_locked():
    config = experiment_config("mnist_resnet")
    with pytest.raises(ValueError, match="locked"):
        config.trainer.train_steps = 1


def test_saved_yaml_round_trips_without_naming_the_experiment(tmp_path):
    config = experiment_config(
        "mnist_resnet",
        sets=[
            "trainer.train_steps=5",
            "task.train_data.num_examples=100",
        ],
    )
    save_yaml(config, tmp_path / "config.yaml")
    again = experiment_config(config_files=[tmp_path / "config.yaml"])
    assert again.as_dict() == config.as_dict()
    assert yaml.safe_load(to_yaml(again))["task"]["name"] == "mnist_resnet"


def test_changing_a_part_type_starts_from_its_defaults(monkeypatch):
    from garden.registry import BACKBONES

    def test_only_net(depth=3, **kwargs):
        return depth

    # Registered for this test only: the registry is global and other tests list every backbone.
    monkeypatch.setitem(BACKBONES._entries, "test_only_net", test_only_net)

    config = experiment_config("mnist_resnet", sets=["task.model.backbone.type=test_only_net"])
    assert config.task.model.backbone.params.as_dict() == {"depth": 3}
    with pytest.raises(GardenError, match="did you mean 'task.model.backbone.params.depth'"):
        experiment_config(
            "mnist_resnet", sets=["task.model.backbone.type=test_only_net", "task.model.backbone.params.dept=1"]
        )
