"""Multi-task training (jiant's design): one shared backbone, one head per sub-task, and a sampler
that picks the task of each step.

A `multitask` config lists its sub-tasks in `task.tasks`; each sub-task is an ordinary task config
(type, head, loss, data) whose backbone, tokenizer and init checkpoint are the multitask's.
"""

import numpy as np

from garden.config import TaskConfig, subtask_configs
from garden.errors import GardenError
from garden.models.task_model import build_backbone, build_task_model
from garden.registry import TASKS
from garden.tasks.task import Task

SAMPLERS = ("uniform", "proportional", "temperature")
SHARED = ("model.backbone", "model.tokenizer")  # config keys the sub-tasks take from the multitask


@TASKS.register("multitask")
class MultiTask(Task):
    def __init__(self, config):
        super().__init__(config)
        subs = subtask_configs(config)
        if not subs:
            raise GardenError("a multitask needs sub-tasks in task.tasks (see 'garden show r8_20ng_multitask')")
        self.tasks = {name: TASKS.get(sub.type)(self._sub_config(name, sub)) for name, sub in subs.items()}
        for name, task in self.tasks.items():
            task.config_path = f"task.tasks.{name}"

    def _sub_config(self, name, sub):
        if sub.model.backbone.type and sub.model.backbone.as_dict() != self.config.model.backbone.as_dict():
            raise GardenError(
                f"sub-task '{name}' sets its own backbone; sub-tasks share task.model.backbone, so remove "
                f"task.tasks.{name}.model.backbone"
            )
        merged = sub.as_dict()
        merged["model"].update(
            backbone=self.config.model.backbone.as_dict(), tokenizer=self.config.model.tokenizer.as_dict()
        )
        merged.update(
            name=name,
            init_checkpoint=self.config.init_checkpoint,
            init_checkpoint_sha256=self.config.init_checkpoint_sha256,
        )
        config = TaskConfig()
        config.override(merged, is_strict=False)
        return config

    def subtasks(self):
        return self.tasks

    def build_models(self):
        """name -> keras.Model; all of them call one backbone layer, so they share its weights."""
        shared = build_backbone(self.config.model)
        return {name: build_task_model(task.config.model, name, shared) for name, task in self.tasks.items()}

    def checkpointed(self, models):
        return models

    def warm_start(self, models):
        first = next(iter(self.tasks))  # the backbone is shared: loading it once loads it for all
        return self.tasks[first].initialize(models[first])

    def assets(self):
        """The sub-tasks' assets; those of the shared backbone and tokenizer under the multitask's own keys."""
        found = {}
        for name, task in self.tasks.items():
            for key, path in task.assets().items():
                found[key if key.startswith(SHARED) else f"tasks.{name}.{key}"] = path
        return found

    def probabilities(self, sizes):
        """The sampler's probability of each task, given its number of training examples."""
        sampler = self.config.sampler
        if sampler.type not in SAMPLERS:
            raise GardenError(
                f"unknown sampler '{sampler.type}' in task.sampler.type; choose from {', '.join(SAMPLERS)}"
            )
        sizes = np.asarray(sizes, np.float64)
        if sampler.examples_cap > 0:
            sizes = np.minimum(sizes, sampler.examples_cap)
        weights = {
            "uniform": np.ones_like(sizes),
            "proportional": sizes,
            "temperature": sizes ** (1.0 / sampler.temperature),
        }
        return weights[sampler.type] / weights[sampler.type].sum()

    def schedule(self, sizes, steps, seed):
        """The task index of every training step, a function of (sizes, seed) only, so a resumed
        run continues the same sequence."""
        return np.random.default_rng(seed).choice(len(sizes), size=steps, p=self.probabilities(sizes))
