"""Multi-label head: the classification head's per-class logits, and the decisions of per-class thresholds."""

import keras
from keras import ops

from garden.models.heads.classification import ClassificationHead
from garden.registry import HEADS


@HEADS.register("multi_label")
class MultiLabelHead(ClassificationHead):
    """Maps pooled features [batch, width] to `logits` [batch, num_classes] (float32) and `decisions`:
    1 where a class's sigmoid reaches its threshold. The thresholds are a weight that training sets
    (garden/tasks/multi_label.py), kept with the model's weights and exported with them."""

    def build(self, input_shape):
        super().build(input_shape)
        self.thresholds = self.add_weight(
            shape=(self.num_classes,), initializer=keras.initializers.Constant(0.5), trainable=False, name="thresholds"
        )

    def call(self, features, training=False):
        logits = super().call(features, training=training)
        decisions = ops.cast(ops.sigmoid(logits) >= ops.cast(self.thresholds, logits.dtype), "int32")
        return {"logits": logits, "decisions": decisions}
