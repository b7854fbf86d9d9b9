"""A run folder: its resolved config, its task, and the model restored from its newest checkpoint."""

import json
import os

import tensorflow as tf

from garden.config import experiment_config
from garden.errors import GardenError
from garden.optimizers import build_optimizer
from garden.registry import TASKS
from garden.train import precision
from garden.train.checkpoints import ema_optimizer, restore


class Run:
    """Loads `run_dir` for evaluation and export, in float32, with EMA weights when the run kept them."""

    def __init__(self, run_dir):
        config_path = os.path.join(run_dir, "config.yaml")
        if not os.path.isfile(config_path):
            raise GardenError(f"{run_dir} is not a run folder (no config.yaml); train one with 'garden train NAME --run-dir {run_dir}'")
        self.run_dir = run_dir
        self.config = experiment_config(config_files=[config_path])
        self.task = TASKS.get(self.config.task.type)(self.config.task)
        self.checkpoint_path = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
        if not self.checkpoint_path:
            raise GardenError(f"{run_dir} has no checkpoint yet; run 'garden train --config {config_path} --run-dir {run_dir}'")
        self.step = int(self.checkpoint_path.rsplit("-", 1)[-1])
        labels_path = os.path.join(run_dir, "labels.json")
        self.label_names = json.load(open(labels_path)) if os.path.isfile(labels_path) else None
        precision.set_policy("float32")
        self.model = self.task.build_model()
        optimizer = build_optimizer(self.config.trainer.optimizer_config)
        trained_policy = precision.POLICIES.get(self.config.runtime.mixed_precision_dtype, "float32")
        optimizer = precision.wrap_optimizer(optimizer, trained_policy, self.config.runtime.loss_scale)
        optimizer.build(self.model.trainable_variables)
        checkpoint = tf.train.Checkpoint(model=self.model, optimizer=optimizer)
        restore(checkpoint, self.checkpoint_path).assert_existing_objects_matched().expect_partial()
        ema = ema_optimizer(optimizer)
        if ema is not None:
            ema.finalize_variable_values(self.model.trainable_variables)
