"""Regression head (STS-B style similarity scores): pooled features -> one float32 score."""

import keras
from keras import ops

from garden.registry import HEADS


@HEADS.register("regression")
class RegressionHead(keras.layers.Layer):
    """[batch, width] -> scores [batch] in float32."""

    features = "pooled_output"

    def __init__(self, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.dropout = dropout
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout", dtype=self.dtype_policy)
        self.score_layer = keras.layers.Dense(1, name="score", dtype="float32")

    def build(self, input_shape):
        self.score_layer.build(input_shape)

    def call(self, features, training=False):
        return ops.squeeze(self.score_layer(self.dropout_layer(features, training=training)), -1)

    def get_config(self):
        return {**super().get_config(), "dropout": self.dropout}
