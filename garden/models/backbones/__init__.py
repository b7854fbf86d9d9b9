"""Backbones: one file each, registered in `garden.registry.BACKBONES`."""

from garden.models.backbones import bert, decoder, distil_bert, resnet, static  # noqa: F401  (registers)
