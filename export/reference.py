"""What every artifact is judged against: the Keras model's serving outputs on held-out examples."""

import numpy as np

from export import manifest
from export.signature import serving_function
from export.verify import PARITY_EXAMPLES, accuracy, max_abs_error
from garden.data.pipeline import eval_dataset
from garden.errors import GardenError

BATCH = 500


def batched(fn, inputs, batch_size=BATCH):
    """Runs fn(*arrays) -> dict over `inputs` (a list of arrays) in batches; concatenates the outputs."""
    count = len(inputs[0])
    parts = [fn(*[a[i : i + batch_size] for a in inputs]) for i in range(0, count, batch_size)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


class Reference:
    def __init__(self, run):
        self.run = run
        self.task = run.task
        self.examples = run.task.load(run.task.held_out(), run.label_names)
        self.function = serving_function(run.task, run.model)
        self.input_specs = run.task.serving_inputs(run.model)
        self.inputs = self.model_inputs(self.examples)
        self.outputs = batched(lambda *a: {k: v.numpy() for k, v in self.function(*a).items()}, self.inputs)
        if "class_id" not in self.outputs:
            raise GardenError(
                f"export judges artifacts by held-out accuracy, which task type '{run.task.config.type}' does not "
                "report yet; export a classification run (or a classification head with --head)"
            )
        self.accuracy = accuracy(self.examples.labels, self.outputs["class_id"])

    def model_inputs(self, examples):
        """The serving inputs (arrays, in signature order) for `examples`, after the task's preprocessing."""
        batches = [features for features, _ in eval_dataset(examples, BATCH, self.task.prepare)]
        return [np.concatenate([b[name].numpy() for b in batches]) for name in self.input_specs]

    def judge(self, outputs):
        """(max abs error on the parity examples, accuracy, accuracy drop in points) of an artifact's outputs."""
        key = self.task.output_for_parity
        error = max_abs_error(self.outputs[key][:PARITY_EXAMPLES], outputs[key][:PARITY_EXAMPLES])
        artifact_accuracy = accuracy(self.examples.labels, outputs["class_id"])
        return error, artifact_accuracy, 100.0 * (self.accuracy - artifact_accuracy)

    def record(self, export_dir, name, target, error, bound, artifact_accuracy, **extra):
        header = {
            "experiment": self.run.config.task.name,
            "run_dir": self.run.run_dir,
            "checkpoint": self.run.checkpoint_path,
            "inputs": {n: {"dtype": s.dtype.name, "shape": [d for d in s.shape]} for n, s in self.input_specs.items()},
            "outputs": list(self.outputs),
            "labels": self.examples.label_names,
            "held_out": {"split": self.task.held_out().split, "examples": len(self.examples)},
            "keras_accuracy": self.accuracy,
        }
        entry = {
            "path": target,
            "size_bytes": manifest.size_bytes(target),
            "max_abs_error": error,
            "error_bound": bound,
            "accuracy": artifact_accuracy,
            **extra,
        }
        return manifest.record(export_dir, header, name, entry)
