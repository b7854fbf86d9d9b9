"""Evaluation: run the model over examples, gather outputs and labels on the host, compute the task's metrics."""

import functools

import numpy as np
import tensorflow as tf

from garden.data.pipeline import eval_dataset
from garden.data.streams import bad_records_named


@functools.cache
def _eval_step(task, model):
    @tf.function
    def step(features, labels):
        return task.eval_outputs(model(features, training=False), labels)

    return step


def evaluate(task, model, examples, batch_size):
    """The task's metrics on every example, with labels as the task's `prepare` aligns them."""
    step = _eval_step(task, model)
    labels, outputs = [], []
    with bad_records_named(examples):
        for features, batch_labels in eval_dataset(examples, batch_size, task.prepare):
            outputs.append(step(features, batch_labels))
            labels.append(batch_labels.numpy())
    gathered = {name: np.concatenate([o[name].numpy() for o in outputs]) for name in outputs[0]}
    return task.metrics(np.concatenate(labels), gathered)
