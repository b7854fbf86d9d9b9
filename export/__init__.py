"""Exporters (SavedModel for TF Serving, TFLite for devices), each verified before it is written:
the references that judge artifacts and the formats that write them register here."""

from garden.export import decoder, reference, saved_model, tflite  # noqa: F401  (registers)
