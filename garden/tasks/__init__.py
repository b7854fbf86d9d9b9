"""Tasks: what a config's `task.type` builds (model, data, loss, metrics, serving outputs)."""

from garden.tasks import classification, text_classification  # noqa: F401  (registers)
