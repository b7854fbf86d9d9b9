"""The serving signatures of a task model: named, typed inputs in, the task's named outputs out.

Classification outputs gain `label`, the label name of `class_id`, so a client needs no label file.
Classifiers and regressions also serve `serve_examples` (Model Garden's name): serialized
tf.train.Examples whose features are the raw signature's inputs, what TF Serving's Classify and
Regress APIs send."""

import dataclasses

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class Signature:
    function: tf.types.experimental.PolymorphicFunction  # positional inputs in the order of `specs`
    specs: dict  # input name -> tf.TensorSpec
    features: dict | None = None  # serve_examples: tf.train.Example feature name -> the spec it is parsed to


def _outputs(serving, model, inputs, label_names):
    outputs = serving.serving_outputs(model(inputs, training=False))
    if label_names and "class_id" in outputs:
        outputs["label"] = tf.gather(tf.constant(label_names), outputs["class_id"])
    return outputs


def _signature(specs, to_model_inputs, serving, model, label_names):
    names = list(specs)

    def serve(*tensors):
        return _outputs(serving, model, to_model_inputs(dict(zip(names, tensors))), label_names)

    return Signature(tf.function(serve, input_signature=[specs[n] for n in names]), specs)


def _example_dtype(dtype):
    """The tf.train.Example list a feature of `dtype` is stored in: bytes, floats or int64s."""
    return tf.string if dtype == tf.string else tf.float32 if dtype.is_floating else tf.int64


def _examples_signature(wrapped):
    """serve_examples over `wrapped`: each feature parsed to its input's per-example shape; None when
    an input's per-example shape is not fixed (tf.train.Example features have fixed lengths here)."""
    if not all(spec.shape[1:].is_fully_defined() for spec in wrapped.specs.values()):
        return None
    parsing = {n: tf.io.FixedLenFeature(s.shape[1:], _example_dtype(s.dtype)) for n, s in wrapped.specs.items()}
    spec = tf.TensorSpec([None], tf.string, name="examples")

    def serve(examples):
        parsed = tf.io.parse_example(examples, parsing)
        return wrapped.function(*[tf.cast(parsed[n], s.dtype) for n, s in wrapped.specs.items()])

    return Signature(tf.function(serve, input_signature=[spec]), {"examples": spec}, dict(wrapped.specs))


def example_feature(kind: str, values: list) -> tf.train.Feature:
    """`values` as a tf.train.Feature holding a list of `kind`: "bytes", "float" or "int64"."""
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def serialized_examples(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Each row of `arrays` (input name -> [batch, ...]) as a serialized tf.train.Example."""
    rows = []
    for i in range(len(next(iter(arrays.values())))):
        feature = {}
        for name, array in arrays.items():
            values = np.asarray(array[i]).reshape(-1)
            if values.dtype.kind in "OSU":
                encoded = [v if isinstance(v, bytes) else str(v).encode() for v in values.tolist()]
                feature[name] = example_feature("bytes", encoded)
            else:
                feature[name] = example_feature("float" if values.dtype.kind == "f" else "int64", values.tolist())
        rows.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return np.array(rows, dtype=object)


def signatures(serving, model, label_names, feature_names):
    """name -> Signature of a task's serving companion `serving`: the model's tensors, raw inputs where
    the task serves them, and serialized tf.train.Examples of the raw inputs (else the tensors) where
    it names an examples signature."""
    tensors = serving.tensor_signature
    found = {tensors: _signature(serving.serving_inputs(model), lambda inputs: inputs, serving, model, label_names)}
    raw = serving.raw_serving(model, feature_names)
    if raw:
        found[serving.raw_signature] = _signature(*raw, serving, model, label_names)
    for alias, name in serving.signature_aliases.items():
        if name in found:
            found[alias] = found[name]
    if serving.examples_signature:
        examples = _examples_signature(found[serving.raw_signature if raw else tensors])
        if examples:
            found[serving.examples_signature] = examples
    return found
