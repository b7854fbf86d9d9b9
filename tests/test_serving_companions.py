"""A Task trains; its serving companion serves (issue 38 part 1): every task type that exports has a
companion registered under its name, and no Task keeps an export or serving method or attribute. An
export reference judges every format through one call, so a new format is one exporter function and
its registration."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import garden

from garden import registry
from garden.data.mnist import mnist
from garden.errors import GardenError
from garden.export.serving import Serving, serving_for
from garden.registry import EXPORTERS, REFERENCES, SERVINGS, TASKS
from garden.tasks.task import Task

SERVING_NAMES = (
    "tensor_signature",
    "raw_signature",
    "examples_signature",
    "export_kind",
    "parity_outputs",
    "quality",
    "signature_aliases",
    "input_ranges",
    "serving_inputs",
    "serving_outputs",
    "serving_quality",
    "preprocessing",
    "raw_serving",
    "serving_resources",
    "raw_features",
    "held_out",
    "load_examples",
)


def exported_task_types() -> list[str]:
    """The task types a run exports: all but those made of sub-tasks (a multitask exports one --head,
    a sub-task of its own type)."""
    registry.load_all()
    return [name for name in TASKS.names() if TASKS.get(name).subtasks is Task.subtasks]


def test_every_exported_task_type_has_a_serving_companion():
    types = exported_task_types()
    assert "text_classification" in types and "multitask" not in types
    missing = [name for name in types if name not in SERVINGS]
    assert not missing, f"register a serving companion (SERVINGS) for {missing}"
    assert set(SERVINGS.names()) <= set(TASKS.names()), "a companion registered for no task type"
    for name in SERVINGS.names():
        assert issubclass(SERVINGS.get(name), Serving)


@pytest.mark.parametrize("name", SERVING_NAMES)
def test_no_task_keeps_a_serving_method_or_attribute(name):
    holders = [kind for kind in [Task, *map(TASKS.get, exported_task_types())] if hasattr(kind, name)]
    assert not holders, f"{name} belongs to the serving companion, not to {holders}"
    assert hasattr(Serving, name)


def test_a_task_type_without_a_companion_is_named_in_one_line(monkeypatch):
    class Unserved(Task):
        pass

    monkeypatch.setitem(TASKS._entries, "unserved", Unserved)
    task = Unserved.__new__(Unserved)
    task.config = type("Config", (), {"type": "unserved"})()
    with pytest.raises(GardenError, match=r"task type 'unserved' has no serving companion.*SERVINGS.register"):
        serving_for(task)


def test_companions_mirror_their_tasks_hierarchy():
    """A companion of a task type derived from another's derives from that one's companion, so a
    multi-label text classifier serves text as a text classifier does (its raw signature)."""
    for name in SERVINGS.names():
        task = TASKS.get(name)
        for other in SERVINGS.names():
            if other != name and issubclass(task, TASKS.get(other)):
                assert issubclass(SERVINGS.get(name), SERVINGS.get(other)), (name, other)


def test_references_judge_every_format_through_one_call():
    registry.load_all()
    for name in REFERENCES.names():
        reference = REFERENCES.get(name)
        per_format = [m for m in dir(reference) if m.startswith("judge_") or "tflite" in m]
        presenting = [m for m in ("row", "keras_row", "columns") if hasattr(reference, m)]  # the CLI renders the table
        assert not per_format + presenting, (name, per_format + presenting)


def copy_jobs(reference, export_dir, workdir):
    """A new format: the export's SavedModel copied to `model.copy` and judged as its own kind ('copy',
    which no reference bounds: judged by its quality alone)."""

    def export():
        target = os.path.join(export_dir, "model.copy")
        shutil.copytree(reference.saved_model(workdir), target)
        loaded = tf.saved_model.load(target)
        measured = reference.judge("copy", lambda name: loaded.signatures[name], reference.signature_to_convert())
        return reference.record(export_dir, "model.copy", target, measured)

    return [("model.copy", export)]


def test_a_new_format_is_one_exporter_function_and_its_registration(tiny_run, tmp_path, monkeypatch):
    """What the reference records for the new artifact is what the artifact, re-run here on the 1000
    held-out test images, does; the export table shows its row."""
    monkeypatch.setitem(EXPORTERS._entries, "copy", copy_jobs)
    printed = garden("export", tiny_run, "--format", "copy", "--out", tmp_path / "out").stdout
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["artifacts"]["model.copy"]
    test = mnist("test").take(1000)
    served = tf.saved_model.load(str(tmp_path / "out" / "model.copy")).signatures["serving_default"]
    accuracy = np.mean(served(image=tf.constant(test.features["image"]))["class_id"].numpy() == test.labels)
    assert entry["accuracy"] == pytest.approx(accuracy, abs=1e-12) and entry["error_bound"] is None
    assert entry["signature"] == "serving_default" and entry["latency_ms"] > 0
    row = next(line for line in printed.splitlines() if line.split()[0] == "model.copy")
    assert f"{100 * accuracy:.2f}%" in row and row.rstrip().endswith("model.copy")
