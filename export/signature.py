"""The serving signatures of a task model: named, typed inputs in, the task's named outputs out.

Classification outputs gain `label`, the label name of `class_id`, so a client needs no label file."""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass
class Signature:
    function: tf.types.experimental.PolymorphicFunction  # positional inputs in the order of `specs`
    specs: dict  # input name -> tf.TensorSpec


def _outputs(task, model, inputs, label_names):
    outputs = task.serving_outputs(model(inputs, training=False))
    if label_names and "class_id" in outputs:
        outputs["label"] = tf.gather(tf.constant(label_names), outputs["class_id"])
    return outputs


def _signature(specs, to_model_inputs, task, model, label_names):
    names = list(specs)

    def serve(*tensors):
        return _outputs(task, model, to_model_inputs(dict(zip(names, tensors))), label_names)

    return Signature(tf.function(serve, input_signature=[specs[n] for n in names]), specs)


def signatures(task, model, label_names, feature_names):
    """name -> Signature: the model's tensors, and raw inputs where the task serves them."""
    found = {
        task.tensor_signature: _signature(task.serving_inputs(model), lambda inputs: inputs, task, model, label_names)
    }
    raw = task.raw_serving(model, feature_names)
    if raw:
        found[task.raw_signature] = _signature(*raw, task, model, label_names)
    return found
