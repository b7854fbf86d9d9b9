"""Extractive QA serves each position's start and end logits and the best span, judged by exact match."""

import numpy as np
import tensorflow as tf

from garden import metrics
from garden.export.serving.text import TextServing
from garden.registry import SERVINGS


@SERVINGS.register("span_qa")
class SpanQAServing(TextServing):
    parity_outputs = ("start_logits", "end_logits")
    quality = "exact_match"

    def serving_outputs(self, outputs):
        logits = tf.cast(outputs["logits"], tf.float32)
        return {
            "start_logits": logits[..., 0],
            "end_logits": logits[..., 1],
            "start": tf.argmax(logits[..., 0], axis=-1, output_type=tf.int32),
            "end": tf.argmax(logits[..., 1], axis=-1, output_type=tf.int32),
        }

    def serving_quality(self, labels, outputs):
        """SQuAD's exact match (as a fraction) of the best spans of the served logits."""
        logits = np.stack([outputs["start_logits"], outputs["end_logits"]], axis=-1)
        return metrics.span_metrics(labels, logits)["exact_match"] / 100
