"""Sentence-pair classification head (BERT's GLUE head for MNLI, QQP, RTE): the packed pair's
pooled features through a tanh layer, then float32 logits."""

import keras

from garden.models.heads.classification import ClassificationHead
from garden.registry import HEADS


@HEADS.register("pair_classification")
class PairClassificationHead(ClassificationHead):
    """[batch, width] features of `[CLS] a [SEP] b [SEP]` -> dense(inner_dim, tanh) -> logits [batch, num_classes]."""

    def __init__(self, num_classes: int = 3, inner_dim: int = 256, dropout: float = 0.1, **kwargs):
        super().__init__(num_classes=num_classes, dropout=dropout, **kwargs)
        self.inner_dim = inner_dim
        self.inner_layer = keras.layers.Dense(inner_dim, activation="tanh", name="inner", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.inner_layer.build(input_shape)
        self.logits_layer.build(input_shape[:-1] + (self.inner_dim,))

    def call(self, features, training=False):
        inner = self.inner_layer(self.dropout_layer(features, training=training))
        return self.logits_layer(self.dropout_layer(inner, training=training))

    def get_config(self):
        return {**super().get_config(), "inner_dim": self.inner_dim}
