"""Multi-task training: jiant's samplers, sub-task configs, and a real run of two heads on one encoder."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import garden

from garden.errors import GardenError
from garden.registry import TASKS
from garden.resolve import experiment_config
from garden.run import Run

SIZES = [100, 400]


def multitask(*sets):
    config = experiment_config("r8_20ng_multitask", sets=sets)
    return TASKS.get("multitask")(config.task)


@pytest.mark.parametrize(
    "sampler, expected",
    [
        (["task.sampler.type=uniform"], [0.5, 0.5]),
        (["task.sampler.type=proportional"], [0.2, 0.8]),
        (["task.sampler.type=temperature", "task.sampler.temperature=2.0"], [1 / 3, 2 / 3]),  # ∝ sqrt(size)
        (["task.sampler.type=proportional", "task.sampler.examples_cap=200"], [1 / 3, 2 / 3]),
    ],
)
def test_sampler_probabilities(sampler, expected):
    np.testing.assert_allclose(multitask(*sampler).probabilities(SIZES), expected)


def test_schedule_is_a_function_of_the_seed_and_follows_the_probabilities():
    task = multitask("task.sampler.type=proportional")
    schedule = task.schedule(SIZES, 4000, seed=3)
    np.testing.assert_array_equal(schedule, task.schedule(SIZES, 4000, seed=3))
    assert 0.77 < np.mean(schedule == 1) < 0.83
    with pytest.raises(GardenError, match="unknown sampler 'zipf'"):
        multitask("task.sampler.type=zipf").probabilities(SIZES)


def test_sub_tasks_are_config_keys_and_share_the_backbone():
    with pytest.raises(GardenError, match="unknown config key 'task.tasks.r9'; did you mean 'task.tasks.r8'"):
        experiment_config("r8_20ng_multitask", sets=["task.tasks.r9.train_data.num_examples=10"])
    task = multitask("task.model.tokenizer.sequence_length=64")
    assert task.tasks["r8"].config.model.backbone.params.hidden_dim == 384
    assert task.tasks["20ng"].sequence_length == 64
    with pytest.raises(GardenError, match="remove task.tasks.r8.model.backbone"):
        multitask("task.tasks.r8.model.backbone.type=distil_bert")


def train_multitask(run_dir, *overrides):
    """The tiny variant: a 2-layer BERT from scratch (the multi-task machinery, not MiniLM's import), 60 steps."""
    garden("train", "r8_20ng_multitask", "--tiny", *[a for s in overrides for a in ("--set", s)], "--run-dir", run_dir)


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "multitask"
    train_multitask(run_dir)
    return run_dir


def test_each_task_improves_and_is_reported_on_its_own(multitask_run):
    rows = [json.loads(line) for line in open(multitask_run / "metrics.jsonl")]
    for name in ("r8", "20ng"):
        validation = [r for r in rows if r["split"] == f"validation/{name}"]
        assert [r["step"] for r in validation] == [30, 60]
        assert validation[-1]["loss"] < validation[0]["loss"] - 0.1
        assert validation[-1]["accuracy"] > validation[0]["accuracy"]
        assert (multitask_run / "summaries" / "validation" / name).is_dir()
    train = [r for r in rows if r["split"] == "train"]
    assert all("loss/r8" in r or "loss/20ng" in r for r in train)
    labels = json.load(open(multitask_run / "labels.json"))
    assert len(labels["r8"]) == 8 and len(labels["20ng"]) == 20


def test_each_head_evaluates_and_exports_on_its_own(multitask_run):
    results = json.loads(garden("eval", multitask_run, "--split", "test").stdout)
    assert set(results["heads"]) == {"r8", "20ng"}
    assert results["heads"]["r8"]["examples"] == 160
    head = json.loads(garden("eval", multitask_run, "--split", "test", "--head", "r8").stdout)
    assert head["accuracy"] == pytest.approx(results["heads"]["r8"]["accuracy"])
    with pytest.raises(GardenError, match="has heads 20ng, r8; pick one with --head NAME"):
        Run(str(multitask_run))
    with pytest.raises(GardenError, match="has no head 'r9'; did you mean 'r8'"):
        Run(str(multitask_run), "r9")
    garden("export", multitask_run, "--head", "r8", "--format", "saved_model")
    manifest = json.load(open(multitask_run / "export" / "r8" / "manifest.json"))
    assert manifest["labels"] == json.load(open(multitask_run / "labels.json"))["r8"]
    assert manifest["keras_accuracy"] == pytest.approx(head["accuracy"])
    assert manifest["artifacts"]["saved_model"]["max_abs_error"] <= 1e-5


def test_a_resumed_multitask_run_continues_its_schedule(multitask_run, tmp_path):
    """Rewound to its step-50 checkpoint and trained on (without validation: a sub-task's data is not
    its model, so the run resumes), the run ends at the same weights, bit for bit: the sampled order of
    the tasks and each task's data go on where they stopped."""
    resumed = tmp_path / "resumed"
    shutil.copytree(multitask_run, resumed, ignore=shutil.ignore_patterns("export"))
    for folder in (resumed / "checkpoints", resumed / "model"):
        for path in folder.glob("ckpt-60.*"):
            path.unlink()
        (folder / "checkpoint").write_text('model_checkpoint_path: "ckpt-50"\nall_model_checkpoint_paths: "ckpt-50"\n')
    train_multitask(resumed, *[f"task.tasks.{name}.validation_data.dataset=''" for name in ("r8", "20ng")])
    rows = [json.loads(line) for line in open(resumed / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["split"] == "train"][-1] == 60
    straight = tf.train.load_checkpoint(str(multitask_run / "model" / "ckpt-60"))
    again = tf.train.load_checkpoint(str(resumed / "model" / "ckpt-60"))
    names = [name for name in straight.get_variable_to_shape_map() if name.startswith("model/")]
    assert len(names) > 30 and set(names) <= set(again.get_variable_to_shape_map())
    for name in names:
        np.testing.assert_array_equal(again.get_tensor(name), straight.get_tensor(name), err_msg=name)
