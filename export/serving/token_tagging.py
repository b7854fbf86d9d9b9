"""Token tagging serves a tag distribution and the likeliest tag at each word piece, judged by the
accuracy of the tags at each word's first piece."""

import numpy as np
import tensorflow as tf

from garden import metrics
from garden.export.serving.text import TextServing
from garden.registry import SERVINGS


@SERVINGS.register("token_tagging")
class TokenTaggingServing(TextServing):
    parity_outputs = ("probabilities",)
    quality = "tag_accuracy"

    def serving_outputs(self, outputs):
        logits = tf.cast(outputs["logits"], tf.float32)
        return {"probabilities": tf.nn.softmax(logits), "tag_ids": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    def serving_quality(self, labels, outputs):
        """Accuracy of the tags at the scored pieces (each word's first)."""
        scored = labels != metrics.IGNORE
        return float(np.mean(outputs["tag_ids"][scored] == labels[scored]))
