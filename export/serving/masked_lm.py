"""Masked language models serve the likeliest token at each position, judged by their accuracy at
the masked positions."""

import numpy as np
import tensorflow as tf

from garden.export.serving.text import TextServing
from garden.registry import SERVINGS


@SERVINGS.register("masked_lm")
class MaskedLMServing(TextServing):
    parity_outputs = ("token_probability",)
    quality = "masked_accuracy"

    def serving_outputs(self, outputs):
        """The likeliest token at each position and its probability."""
        probabilities = tf.nn.softmax(tf.cast(outputs["logits"], tf.float32))
        return {
            "token_ids": tf.argmax(probabilities, axis=-1, output_type=tf.int32),
            "token_probability": tf.reduce_max(probabilities, axis=-1),
        }

    def serving_quality(self, labels, outputs):
        scored = labels != -1
        return float(np.mean(outputs["token_ids"][scored] == labels[scored]))
