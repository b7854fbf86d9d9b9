"""A run folder: its resolved config, its task, and the model restored from its newest checkpoint."""

import json
import os

import tensorflow as tf

from garden.config import experiment_config
from garden.errors import GardenError, did_you_mean
from garden.optimizers import build_optimizer
from garden.registry import TASKS
from garden.tasks.multitask import build_models, checkpointed, subtasks, trainable_variables
from garden.train import precision
from garden.train.checkpoints import ema_optimizer, restore


def read_labels(run_dir):
    """labels.json: the label names, or sub-task name -> label names for a multi-task run."""
    path = os.path.join(run_dir, "labels.json")
    return json.load(open(path)) if os.path.isfile(path) else None


def run_config(run_dir):
    """The experiment config saved in `run_dir`."""
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        raise GardenError(
            f"{run_dir} is not a run folder (no config.yaml); train one with 'garden train NAME --run-dir {run_dir}'"
        )
    return experiment_config(config_files=[path])


class Run:
    """Loads `run_dir` for evaluation and export, in float32, with EMA weights when the run kept them.
    A multi-task run loads every head; `head` picks the sub-task that `task` and `model` stand for."""

    def __init__(self, run_dir, head=None):
        self.run_dir = run_dir
        self.config = run_config(run_dir)
        config_path = os.path.join(run_dir, "config.yaml")
        trained = TASKS.get(self.config.task.type)(self.config.task)
        tasks = subtasks(trained)
        self.head = self._pick(head, list(tasks))
        self.task = tasks[self.head]
        self.checkpoint_path = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
        if not self.checkpoint_path:
            raise GardenError(
                f"{run_dir} has no checkpoint yet; run 'garden train --config {config_path} --run-dir {run_dir}'"
            )
        self.step = int(self.checkpoint_path.rsplit("-", 1)[-1])
        labels = read_labels(run_dir)
        self.label_names = labels[self.head] if self.head else labels
        precision.set_policy("float32")
        models = build_models(trained)
        variables = trainable_variables(models)
        optimizer = build_optimizer(self.config.trainer.optimizer_config)
        trained_policy = precision.POLICIES.get(self.config.runtime.mixed_precision_dtype, "float32")
        optimizer = precision.wrap_optimizer(optimizer, trained_policy, self.config.runtime.loss_scale)
        optimizer.build(variables)
        checkpoint = tf.train.Checkpoint(model=checkpointed(models), optimizer=optimizer)
        restore(checkpoint, self.checkpoint_path).assert_existing_objects_matched().expect_partial()
        ema = ema_optimizer(optimizer)
        if ema is not None:
            ema.finalize_variable_values(variables)
        self.model = models[self.head]

    @staticmethod
    def heads(run_dir):
        """The sub-task names of a multi-task run folder, or [''] for a single task."""
        labels = read_labels(run_dir)
        return list(labels) if isinstance(labels, dict) else [""]

    @staticmethod
    def _pick(head, names):
        if names == [""]:
            if head:
                raise GardenError(f"--head {head}: this run trained a single task; leave --head out")
            return ""
        if not head:
            raise GardenError(f"this multi-task run has heads {', '.join(names)}; pick one with --head NAME")
        if head not in names:
            raise GardenError(f"this multi-task run has no head '{head}'{did_you_mean(head, names)}")
        return head
