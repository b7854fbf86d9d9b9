"""Exporters (SavedModel for TF Serving, TFLite for devices), each verified before it is written."""

from garden.export import saved_model, tflite  # noqa: F401  (registers)
