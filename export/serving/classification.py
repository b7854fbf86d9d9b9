"""Classifiers serve probabilities and a class id, and are judged by accuracy."""

import numpy as np
import tensorflow as tf

from garden.export.serving.base import Serving
from garden.signature_names import EXAMPLES_SIGNATURE


class ClassificationServing(Serving):
    """Outputs `probabilities` [batch, classes] and `class_id` [batch]."""

    parity_outputs = ("probabilities",)
    quality = "accuracy"
    examples_signature = EXAMPLES_SIGNATURE

    def serving_outputs(self, outputs):
        logits = tf.cast(outputs["logits"], tf.float32)
        return {"probabilities": tf.nn.softmax(logits), "class_id": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    def serving_quality(self, labels, outputs):
        return float(np.mean(np.asarray(outputs["class_id"]).reshape(-1) == labels))
