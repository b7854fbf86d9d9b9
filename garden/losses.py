"""Registered losses. Each factory returns fn(labels, logits) -> per-example loss [batch]."""

import keras
from keras import ops

from garden.registry import LOSSES


@LOSSES.register("sparse_categorical_crossentropy")
def sparse_categorical_crossentropy(label_smoothing=0.0):
    """Cross-entropy of integer labels against logits, with optional label smoothing."""

    def loss(labels, logits):
        logits = ops.cast(logits, "float32")
        if not label_smoothing:
            return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        one_hot = ops.one_hot(ops.cast(labels, "int32"), ops.shape(logits)[-1])
        return keras.losses.categorical_crossentropy(
            one_hot, logits, from_logits=True, label_smoothing=label_smoothing
        )

    return loss
