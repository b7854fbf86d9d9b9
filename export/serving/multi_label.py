"""Multi-label classifiers serve a sigmoid per class and the classes at or over their thresholds,
and are judged by micro F1."""

import numpy as np
import tensorflow as tf

from garden import metrics
from garden.export.serving.classification import ClassificationServing


class MultiLabelServing(ClassificationServing):
    """Outputs `probabilities` [batch, classes] (a sigmoid each) and `labels` [batch, classes], 1 where
    a probability reaches its class's threshold (the `multi_label` head's)."""

    parity_outputs = ("probabilities",)
    quality = "f1_micro"

    def serving_outputs(self, outputs):
        logits = tf.cast(outputs["logits"], tf.float32)
        return {"probabilities": tf.sigmoid(logits), "labels": tf.cast(outputs["decisions"], tf.int32)}

    def serving_quality(self, labels, outputs):
        return metrics.micro_f1(labels, np.asarray(outputs["labels"]))
