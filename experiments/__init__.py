"""Registered experiments: importing this package registers every family."""

from experiments import image_classification, text_classification  # noqa: F401  (registers)
