"""Registered experiments: importing this package registers every family."""

from garden.experiments import image_classification, language_model, text_classification, text_multitask, text_tasks  # noqa: F401  (registers)
