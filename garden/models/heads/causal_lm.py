"""Causal language-model head: the decoder's own next-token logits from its tied embedding."""

import keras
from keras import ops

from garden.registry import HEADS


@HEADS.register("causal_lm")
class CausalLMHead(keras.layers.Layer):
    """`token_logits` [batch, length, vocabulary] -> the same logits in float32: a decoder ties its
    output projection to its input embedding, so the projection lives in the backbone."""

    features = "token_logits"

    def call(self, features):
        return ops.cast(features, "float32")
