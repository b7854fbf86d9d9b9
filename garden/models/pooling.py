"""Masked mean pooling over a sequence (sentence-transformers' mean pooling)."""

import keras
from keras import ops


class MaskedMeanPooling(keras.layers.Layer):
    """Averages `sequence` [batch, length, width] over positions where `mask` [batch, length] is true."""

    def call(self, sequence, mask):
        weights = ops.cast(mask, sequence.dtype)[..., None]
        total = ops.sum(sequence * weights, axis=1)
        return total / ops.maximum(ops.sum(weights, axis=1), ops.cast(1e-9, sequence.dtype))
