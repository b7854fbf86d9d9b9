"""Classification head: optional dropout, then a float32 logits layer."""

import keras

from garden.registry import HEADS


@HEADS.register("classification")
class ClassificationHead(keras.layers.Layer):
    """Maps pooled features [batch, width] to logits [batch, num_classes], always in float32."""

    features = "pooled_output"

    def __init__(self, num_classes: int = 2, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dropout = dropout
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout", dtype=self.dtype_policy)
        self.logits_layer = keras.layers.Dense(num_classes, name="logits", dtype="float32")

    def build(self, input_shape):
        self.logits_layer.build(input_shape)

    def call(self, features, training=False):
        return self.logits_layer(self.dropout_layer(features, training=training))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dropout": self.dropout}
