"""SavedModel export for TF Serving: `serving_default` with named, typed inputs and named outputs."""

import os
import shutil
import tempfile

import keras
import tensorflow as tf

from export.reference import batched
from export.verify import check
from garden.registry import EXPORTERS

NAME = "saved_model"


def write(reference, directory):
    """Writes the SavedModel of `reference`'s model and serving function into `directory`."""
    archive = keras.export.ExportArchive()
    archive.track(reference.run.model)
    archive.add_endpoint("serving_default", reference.function)
    archive.write_out(directory, verbose=False)
    return directory


def run_saved_model(directory, names, inputs):
    """Runs `serving_default` of the SavedModel on `inputs` (arrays in the order of `names`)."""
    signature = tf.saved_model.load(directory).signatures["serving_default"]
    return batched(lambda *a: {k: v.numpy() for k, v in signature(**dict(zip(names, a))).items()}, inputs)


@EXPORTERS.register(NAME)
def export_saved_model(reference, export_dir, max_error=1e-5, max_accuracy_drop=1.0):
    """Writes `export_dir/saved_model` if its outputs match the Keras model; returns the manifest."""
    target = os.path.join(export_dir, NAME)
    staging = tempfile.mkdtemp(dir=export_dir, prefix=f".{NAME}-")
    try:
        write(reference, staging)
        error, accuracy, drop = reference.judge(run_saved_model(staging, list(reference.input_specs), reference.inputs))
        check(NAME, error, max_error, drop, max_accuracy_drop)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return reference.record(export_dir, NAME, target, error, max_error, accuracy)
