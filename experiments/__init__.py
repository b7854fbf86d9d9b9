"""Registered experiments: importing this package registers every family."""

from garden.experiments import (  # noqa: F401  (registers)
    image_classification,
    imagenet,
    language_model,
    text_classification,
    text_embedding,
    text_multitask,
    text_tasks,
)
