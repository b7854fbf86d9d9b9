"""Evaluation: run the model over examples, gather outputs and labels on the host, compute the task's metrics."""

import functools

import numpy as np
import tensorflow as tf

from garden.data.pipeline import eval_dataset
from garden.data.streams import bad_records_named
from garden.errors import GardenError


@functools.cache
def _eval_step(task, model):
    @tf.function
    def step(features, labels):
        return task.eval_outputs(model(features, training=False), labels)

    return step


def evaluate(task, model, examples, batch_size, calibrate=False):
    """The task's metrics on every example, with labels as the task's `prepare` aligns them; with
    `calibrate`, the task then fits what it sets on validation data (multi-label thresholds)."""
    step = _eval_step(task, model)
    labels, outputs = [], []
    with bad_records_named(examples):
        for features, batch_labels in eval_dataset(examples, batch_size, task.prepare):
            outputs.append(step(features, batch_labels))
            labels.append(batch_labels.numpy())
    gathered = {name: np.concatenate([o[name].numpy() for o in outputs]) for name in outputs[0]}
    labels = np.concatenate(labels)
    results = task.metrics(labels, gathered)
    if calibrate:
        task.calibrate(model, labels, gathered)
    return results


def split_examples(run, split: str):
    """The examples of a loaded `Run`'s `split` ('train', 'validation' or 'test')."""
    data = getattr(run.task.config, f"{split}_data")
    if not data.dataset:
        have = [s for s in ("train", "validation", "test") if getattr(run.task.config, f"{s}_data").dataset]
        raise GardenError(f"the run has no {split} data; choose --split from {', '.join(have)}")
    return run.task.load(data, run.label_names)


def evaluate_split(run, split: str, examples=None) -> dict:
    """The metrics of a loaded `Run` on its `split` data, with the step and checkpoint they come
    from; `examples` (its `split_examples`) spares loading the data again."""
    examples = examples if examples is not None else split_examples(run, split)
    batch_size = getattr(run.task.config, f"{split}_data").global_batch_size or 256
    results = evaluate(run.task, run.model, examples, batch_size)
    return {"split": split, "step": run.step, "checkpoint": run.checkpoint_path, "examples": len(examples), **results}
