"""What every artifact is judged against: the Keras model's serving outputs on held-out examples."""

import numpy as np

from garden.data.pipeline import eval_dataset
from garden.errors import GardenError
from garden.export import manifest
from garden.export.signature import signatures
from garden.export.verify import PARITY_EXAMPLES, accuracy, max_abs_error, median_latency_ms

BATCH = 500
DEFAULT = "serving_default"


def batched(fn, inputs, batch_size=BATCH):
    """Runs fn(*arrays) -> dict over `inputs` (a list of arrays) in batches; concatenates the outputs."""
    count = len(inputs[0])
    parts = [fn(*[a[i : i + batch_size] for a in inputs]) for i in range(0, count, batch_size)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def numpy_outputs(function):
    return lambda *arrays: {k: v.numpy() for k, v in function(*arrays).items()}


def _spec_entry(spec):
    return {"dtype": spec.dtype.name, "shape": list(spec.shape)}


class Reference:
    """The held-out split, each serving signature's inputs for it, and the Keras model's outputs
    (through the tensor signature, fed by the training input pipeline)."""

    def __init__(self, run):
        self.run = run
        self.task = run.task
        self.examples = run.task.load(run.task.held_out(), run.label_names)
        self.signatures = signatures(run.task, run.model, self.examples.label_names, list(self.examples.features))
        tensors = self.task.tensor_signature
        self.inputs, self.expected = {}, {}
        for name in self.signatures:  # the tensor signature first
            self.inputs[name], held = self.signature_inputs(name, self.examples)
            if name == tensors:
                self.expected[name] = self._keras_run(self.inputs[name])
            elif held is self.examples:
                self.expected[name] = self.expected[tensors]
            else:  # the raw form holds other examples (say, images rounded to 8 bits)
                self.expected[name] = self._keras_run(self.signature_inputs(tensors, held)[0])
        if "class_id" not in self.expected[tensors]:
            raise GardenError(
                f"export judges artifacts by held-out accuracy, which task type '{run.task.config.type}' does not "
                "report yet; export a classification run (or a classification head with --head)"
            )
        self.accuracy = accuracy(self.examples.labels, self.expected[tensors]["class_id"])

    def signature_inputs(self, name, examples):
        """(arrays of `examples` in the input order of signature `name`, the Examples they hold): the
        prepared tensors for the tensor signature, what a client sends (strings, encoded images) otherwise."""
        names = list(self.signatures[name].specs)
        if name != self.task.tensor_signature:
            return self.task.raw_features(examples, names)
        batches = [features for features, _ in eval_dataset(examples, BATCH, self.task.prepare)]
        return [np.concatenate([b[n].numpy() for b in batches]) for n in names], examples

    def _keras_run(self, tensors):
        """The Keras model's serving outputs on prepared `tensors` (from the training input pipeline)."""
        return batched(numpy_outputs(self.signatures[self.task.tensor_signature].function), tensors)

    def keras_latency_ms(self, name=DEFAULT):
        """Median latency of one example through the Keras model's signature `name`, in TensorFlow."""
        return median_latency_ms(self.signatures[name].function, self.inputs[name])

    def judge(self, name, outputs):
        """(max abs error on the parity examples, accuracy, accuracy drop in points) of an artifact's
        outputs for signature `name`, against the Keras model on the same examples."""
        key, expected = self.task.output_for_parity, self.expected[name]
        error = max_abs_error(expected[key][:PARITY_EXAMPLES], outputs[key][:PARITY_EXAMPLES])
        if "label" in outputs:
            names = np.asarray(self.examples.label_names, dtype=object)[np.asarray(outputs["class_id"]).reshape(-1)]
            given = [x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(outputs["label"]).reshape(-1)]
            if list(names) != given:
                raise GardenError("the artifact's `label` output disagrees with its `class_id`; nothing was written")
        artifact_accuracy = accuracy(self.examples.labels, outputs["class_id"])
        keras_accuracy = accuracy(self.examples.labels, expected["class_id"])
        return error, artifact_accuracy, 100.0 * (keras_accuracy - artifact_accuracy)

    def header(self):
        return {
            "experiment": self.run.config.task.name,
            "run_dir": self.run.run_dir,
            "checkpoint": self.run.checkpoint_path,
            "signatures": {
                name: {"inputs": {n: _spec_entry(s) for n, s in signature.specs.items()}}
                for name, signature in self.signatures.items()
            },
            "outputs": list(self.expected[self.task.tensor_signature]),
            "labels": self.examples.label_names,
            "held_out": {"split": self.task.held_out().split, "examples": len(self.examples)},
            "keras_accuracy": self.accuracy,
        }

    def record(self, export_dir, name, target, error, bound, artifact_accuracy, **extra):
        entry = {
            "path": target,
            "size_bytes": manifest.size_bytes(target),
            "max_abs_error": error,
            "error_bound": bound,
            "accuracy": artifact_accuracy,
            **extra,
        }
        return manifest.record(export_dir, self.header(), name, entry)
