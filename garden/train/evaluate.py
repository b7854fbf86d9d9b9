"""Evaluation: run the model over examples, gather outputs on the host, compute the task's metrics."""

import numpy as np
import tensorflow as tf

from garden.data.pipeline import eval_dataset


def predict(task, model, examples, batch_size):
    """The model's outputs (name -> numpy array) on every example, in order."""
    forward = tf.function(lambda features: model(features, training=False))
    batches = [forward(features) for features, _ in eval_dataset(examples, batch_size, task.preprocess)]
    return {name: np.concatenate([b[name].numpy() for b in batches]) for name in batches[0]}


def evaluate(task, model, examples, batch_size):
    return task.metrics(examples.labels, predict(task, model, examples, batch_size))
