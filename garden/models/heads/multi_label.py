"""Multi-label head: per-class logits and the decisions of per-class thresholds."""

import keras
from keras import ops

from garden.registry import HEADS


@HEADS.register("multi_label")
class MultiLabelHead(keras.layers.Layer):
    """Maps pooled features [batch, width] to `logits` [batch, num_classes] (float32) and `decisions`:
    1 where a class's sigmoid reaches its threshold. The thresholds are a weight that training sets
    (garden/tasks/multi_label.py), kept with the model's weights and exported with them."""

    features = "pooled_output"

    def __init__(self, num_classes: int = 2, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dropout = dropout
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout", dtype=self.dtype_policy)
        self.logits_layer = keras.layers.Dense(num_classes, name="logits", dtype="float32")

    def build(self, input_shape):
        self.logits_layer.build(input_shape)
        self.thresholds = self.add_weight(
            shape=(self.num_classes,), initializer=keras.initializers.Constant(0.5), trainable=False, name="thresholds"
        )

    def call(self, features, training=False):
        logits = self.logits_layer(self.dropout_layer(features, training=training))
        decisions = ops.cast(ops.sigmoid(logits) >= ops.cast(self.thresholds, logits.dtype), "int32")
        return {"logits": logits, "decisions": decisions}

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dropout": self.dropout}
