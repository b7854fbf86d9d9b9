"""Every registered experiment carries a tiny variant (big_vision's `runlocal`): an ordinary config,
shown by `garden show NAME --tiny` and overridden by `--set`, that trains in seconds on 2 CPU cores."""

import pytest
from conftest import garden, tiny_run  # noqa: F401  (the fixture)

from garden import registry
from garden.resolve import experiment_config
from garden.yaml_files import parse_yaml


def _flat(config, prefix=""):
    """dotted key -> value of a config's leaves."""
    flat = {}
    for key, value in (config.as_dict() if hasattr(config, "as_dict") else config).items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _trained_examples(config):
    """Examples one run of `config` reads: steps x the batch of its (sub-)task."""
    tasks = [t for k, t in config.task.tasks.as_dict().items()] if config.task.type == "multitask" else []
    batch = max([t["train_data"]["global_batch_size"] for t in tasks] or [config.task.train_data.global_batch_size])
    return config.trainer.train_steps * batch


@pytest.mark.parametrize("name", registry.EXPERIMENTS.names())
def test_every_experiment_has_a_tiny_variant_that_garden_show_prints(name):
    """`garden show NAME --tiny` prints the tiny variant, which trains a few steps (at most 300 and
    20,000 examples), validates and checkpoints within them, decays its learning rate over them and
    warms up for a tenth of them at most; the rest of it is the full experiment's."""
    full = experiment_config(name)
    shown = garden("show", name, "--tiny").stdout
    tiny = experiment_config(name, tiny=True)
    assert _flat(parse_yaml(shown, "shown")) == _flat(tiny), name
    trainer = tiny.trainer
    assert trainer.train_steps < full.trainer.train_steps and trainer.train_steps <= 300, name
    assert _trained_examples(tiny) <= 20_000 and _trained_examples(tiny) < _trained_examples(full), name
    assert trainer.validation_interval <= trainer.train_steps >= trainer.checkpoint_interval, name
    learning_rate = trainer.optimizer_config.learning_rate
    assert getattr(learning_rate, learning_rate.type).decay_steps == trainer.train_steps, name
    warmup = trainer.optimizer_config.warmup
    assert warmup.linear.warmup_steps <= max(trainer.train_steps // 2, 1), name
    assert tiny.task.name == full.task.name == name
    assert tiny.task.type == full.task.type and tiny.task.model.backbone.type == full.task.model.backbone.type


def test_the_tiny_variant_is_overridden_like_any_config_and_refused_where_there_is_none(monkeypatch):
    """`--set` applies after the tiny variant; an experiment registered without one is refused in one line."""
    shown = garden("show", "mnist_resnet", "--tiny", "--set", "trainer.train_steps=7").stdout
    assert parse_yaml(shown, "shown")["trainer"]["train_steps"] == 7
    assert parse_yaml(shown, "shown")["task"]["train_data"]["num_examples"] == 4096  # the tiny variant's

    def plugin():  # registered as a plugin may, without register_experiment's tiny=
        return registry.EXPERIMENTS.get("mnist_resnet")()

    monkeypatch.setitem(registry.EXPERIMENTS._entries, "mnist_resnet_untiny", plugin)
    assert garden("show", "mnist_resnet_untiny").returncode == 0
    refused = garden("show", "mnist_resnet_untiny", "--tiny", check=False)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "experiment mnist_resnet_untiny has no tiny variant; drop --tiny" in refused.stderr


def test_a_tiny_run_trains_the_tiny_variant(tiny_run):  # noqa: F811
    """conftest's tiny_run is `garden train mnist_resnet --tiny`: its folder keeps the tiny config."""
    kept = parse_yaml(open(tiny_run / "config.yaml").read(), "config.yaml")
    assert _flat(kept) == _flat(experiment_config("mnist_resnet", tiny=True))
