"""Registers the tasks' serving companions, the references that judge artifacts and the formats that
write them: the `garden.plugins` entry point `exporters`, loaded by `registry.load_all()`."""

from garden.export import (  # noqa: F401  (registers)
    decoder,
    hugging_face,
    keras_hub_preset,
    reference,
    saved_model,
    serving,
    tflite,
)
