"""SavedModel export for TF Serving: every serving signature of the task (raw inputs and tensors),
reloaded from disk and judged against the Keras model before the folder is moved into place."""

import contextlib
import os
import shutil
import tempfile

import tensorflow as tf

from garden.export.exporting import Job
from garden.export.reference import ExportReference
from garden.registry import EXPORTERS

NAME = "saved_model"


@contextlib.contextmanager
def staged(export_dir):
    """A staging folder in `export_dir` that becomes `export_dir/saved_model` if the block ends
    without an error; removed either way, so a refused SavedModel leaves nothing behind."""
    target = os.path.join(export_dir, NAME)
    staging = tempfile.mkdtemp(dir=export_dir, prefix=f".{NAME}-")
    try:
        yield staging
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide the model from a server's user
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_saved_model(reference: ExportReference, export_dir: str, workdir: str) -> dict:
    """Writes `export_dir/saved_model` if the reloaded copy passes the reference; returns the manifest."""
    with staged(export_dir) as staging:
        shutil.copytree(reference.saved_model(workdir), staging, dirs_exist_ok=True)
        loaded = tf.saved_model.load(staging)
        measured = reference.judge(NAME, lambda signature: loaded.signatures[signature])
    return reference.record(export_dir, NAME, os.path.join(export_dir, NAME), measured)


@EXPORTERS.register(NAME)
def saved_model_jobs(reference: ExportReference, export_dir: str, workdir: str) -> list[Job]:
    return [(NAME, lambda: export_saved_model(reference, export_dir, workdir))]
