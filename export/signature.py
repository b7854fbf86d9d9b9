"""The serving function of a task model: named, typed inputs in, the task's named outputs out."""

import tensorflow as tf


def serving_function(task, model):
    """A tf.function whose positional inputs are the task's serving inputs, in order, by name."""
    specs = task.serving_inputs(model)
    names = list(specs)

    def serve(*tensors):
        return task.serving_outputs(model(dict(zip(names, tensors)), training=False))

    return tf.function(serve, input_signature=[specs[n] for n in names])
