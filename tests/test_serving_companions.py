"""A Task trains; its serving companion serves (issue 38 part 1): every task type that exports has a
companion registered under its name, and no Task keeps an export or serving method or attribute."""

import pytest

from garden import registry
from garden.errors import GardenError
from garden.export.serving import Serving, serving_for
from garden.registry import SERVINGS, TASKS
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
