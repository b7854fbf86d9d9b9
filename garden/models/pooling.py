"""Pooling a text encoder's sequence into one vector: `cls` or masked `mean` (sentence-transformers)."""

import keras
from keras import ops

from garden.errors import GardenError

POOLINGS = ("cls", "mean")


def check_pooling(backbone, pooling):
    if pooling not in POOLINGS:
        raise GardenError(f"unknown pooling '{pooling}' for backbone {backbone}; choose {' or '.join(POOLINGS)}")


class MaskedMeanPooling(keras.layers.Layer):
    """Averages `sequence` [batch, length, width] over positions where `mask` [batch, length] is true."""

    def call(self, sequence, mask):
        weights = ops.expand_dims(ops.cast(mask, sequence.dtype), -1)
        total = ops.sum(sequence * weights, axis=1)
        return total / ops.maximum(ops.sum(weights, axis=1), ops.cast(1e-9, sequence.dtype))
