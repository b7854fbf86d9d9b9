"""Task heads: one file each, registered in `garden.registry.HEADS`."""

from garden.models.heads import classification  # noqa: F401  (registers)
