"""Multi-label classification: each example holds any number of the classes (multi-hot labels), a
sigmoid per class, binary cross-entropy, and per-class thresholds set on validation data."""

import numpy as np
import tensorflow as tf

from garden import metrics
from garden.data.streams import Stream
from garden.errors import GardenError
from garden.tasks.classification import ClassificationTask


class MultiLabelTask(ClassificationTask):
    """The `multi_label` head's `logits` and `decisions` (1 where a class's sigmoid reaches its
    threshold). The head holds the thresholds; after each validation the trainer sets each to the one
    that maximizes its class's F1 on the validation data (0.5 before the first, and for a class
    validation never shows)."""

    multi_label = True

    def load(self, data_config, label_names=None):
        examples = super().load(data_config, label_names)
        if not (examples.multi_label if isinstance(examples, Stream) else np.ndim(examples.labels) == 2):
            raise GardenError(
                f"task type '{self.config.type}' trains on multi-label data: set {self.config_path}.*_data.dataset "
                "to multi_label_text_file (labels joined by label_separator, or a JSON list in .jsonl files) or "
                "multi_label_tfrecord (image records whose label_key lists every class id)"
            )
        return examples

    def label_encoder(self):
        """A record's class ids -> multi-hot [classes], as multi_label_text_file's labels."""
        num_classes = self.config.model.head.params.num_classes
        return lambda ids: tf.minimum(tf.reduce_sum(tf.one_hot(ids, num_classes, dtype=tf.float32), axis=0), 1.0)

    def build_loss(self, train=None):
        if self.config.loss.type != "sigmoid_crossentropy" or self.config.model.head.type != "multi_label":
            raise GardenError(
                f"task type '{self.config.type}' needs the multi_label head and the sigmoid_crossentropy loss; set "
                f"{self.config_path}.model.head.type=multi_label and {self.config_path}.loss.type=sigmoid_crossentropy"
            )
        return super().build_loss(train)

    def metrics(self, labels, outputs):
        return metrics.multi_label_metrics(labels, outputs["logits"], outputs["decisions"])

    def calibrate(self, model, labels, outputs):
        head = model.get_layer("head")
        probabilities = 1 / (1 + np.exp(-outputs["logits"].astype(np.float64)))
        head.thresholds.assign(metrics.best_thresholds(labels, probabilities, head.thresholds.numpy()))
