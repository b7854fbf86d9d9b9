"""Masked language model head (BERT's pretraining objective): KerasHub's MaskedLMHead over every
token (a dense transform, layer norm and a projection onto the vocabulary; untied from the
backbone's embedding), in float32 under any precision policy."""

import keras
import keras_hub
from keras import ops

from garden.registry import HEADS


@HEADS.register("masked_lm")
class MaskedLMHead(keras.layers.Layer):
    """`sequence_output` [batch, length, width] -> logits [batch, length, vocabulary_size] in float32;
    the loss scores only the masked positions (labels of other positions are -1)."""

    features = "sequence_output"

    def __init__(self, vocabulary_size: int = 30522, activation: str = "gelu", **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.activation = activation
        self.lm_head = keras_hub.layers.MaskedLMHead(
            vocabulary_size=vocabulary_size, activation=activation, name="lm_head", dtype="float32"
        )

    def build(self, input_shape):
        self.lm_head.build(input_shape, (input_shape[0], input_shape[1]))

    def call(self, features):
        length = ops.shape(features)[1]
        positions = ops.broadcast_to(ops.arange(length, dtype="int32"), ops.shape(features)[:2])
        return self.lm_head(ops.cast(features, "float32"), mask_positions=positions)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size, "activation": self.activation}
