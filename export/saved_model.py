"""SavedModel export for TF Serving: every serving signature of the task (raw inputs and tensors),
reloaded from disk and judged against the Keras model before the folder is moved into place."""

import os
import shutil

import tensorflow as tf

from garden.export.exporting import Job, staged
from garden.export.reference import ExportReference
from garden.registry import EXPORTERS

NAME = "saved_model"


def export_saved_model(reference: ExportReference, export_dir: str, workdir: str) -> dict:
    """Writes `export_dir/saved_model` if the reloaded copy passes the reference; returns the manifest."""
    with staged(export_dir, NAME) as staging:
        shutil.copytree(reference.saved_model(workdir), staging, dirs_exist_ok=True)
        loaded = tf.saved_model.load(staging)
        measured = reference.judge(NAME, lambda signature: loaded.signatures[signature])
    return reference.record(export_dir, NAME, os.path.join(export_dir, NAME), measured)


@EXPORTERS.register(NAME)
def saved_model_jobs(reference: ExportReference, export_dir: str, workdir: str) -> list[Job]:
    return [(NAME, lambda: export_saved_model(reference, export_dir, workdir))]
