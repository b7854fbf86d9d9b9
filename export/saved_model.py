"""SavedModel export for TF Serving: every serving signature of the task (raw inputs and tensors),
each judged against the Keras model before the folder is moved into place."""

import contextlib
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from garden.export.reference import batched, numpy_outputs
from garden.export.verify import Refused, refusal
from garden.registry import EXPORTERS

NAME = "saved_model"


def write(reference, directory):
    """Writes the SavedModel of `reference`'s model with all its signatures into `directory`."""
    archive = keras.export.ExportArchive()
    archive.track(reference.run.model)
    for name, signature in reference.signatures.items():
        archive.add_endpoint(name, signature.function)
    archive.write_out(directory, verbose=False)
    return directory


def run_saved_model(directory, name, names, inputs):
    """Runs signature `name` of the SavedModel on `inputs` (arrays in the order of input `names`)."""
    signature = tf.saved_model.load(directory).signatures[name]
    return batched(numpy_outputs(lambda *arrays: signature(**dict(zip(names, arrays)))), inputs)


@contextlib.contextmanager
def staged(export_dir):
    """A staging folder in `export_dir` that becomes `export_dir/saved_model` if the block ends
    without an error; removed either way, so a refused SavedModel leaves nothing behind."""
    target = os.path.join(export_dir, NAME)
    staging = tempfile.mkdtemp(dir=export_dir, prefix=f".{NAME}-")
    try:
        yield staging
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@EXPORTERS.register(NAME)
def export_saved_model(reference, export_dir, max_error=1e-5, max_accuracy_drop=1.0):
    """Writes `export_dir/saved_model` if every signature matches the Keras model; returns the manifest."""
    with staged(export_dir) as staging:
        write(reference, staging)
        judged = {}
        for name, signature in reference.signatures.items():
            outputs = run_saved_model(staging, name, list(signature.specs), reference.inputs[name])
            error, accuracy, drop = reference.judge(name, outputs)
            judged[name] = {"max_abs_error": error, "accuracy": accuracy, "accuracy_drop": drop}
            reason = refusal(f"{NAME} signature {name}", error, max_error, drop, max_accuracy_drop)
            if reason:
                raise Refused(reason, NAME, judged[name])
    target = os.path.join(export_dir, NAME)
    worst = max(judged.values(), key=lambda entry: entry["max_abs_error"])
    return reference.record(
        export_dir,
        NAME,
        target,
        worst["max_abs_error"],
        max_error,
        min(entry["accuracy"] for entry in judged.values()),
        signatures=judged,
    )
