"""Backbones: one file each, registered in `garden.registry.BACKBONES`."""

from garden.models.backbones import (  # noqa: F401  (registers)
    bert,
    decoder,
    distil_bert,
    image_families,
    keras_hub,
    resnet,
    static,
)
