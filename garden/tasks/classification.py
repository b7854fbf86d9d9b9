"""Classification: integer labels, cross-entropy, accuracy; serves probabilities and a class id."""

import numpy as np
import tensorflow as tf

from garden import metrics
from garden.data.streams import Stream
from garden.errors import GardenError
from garden.signature_names import EXAMPLES_SIGNATURE
from garden.tasks.task import Task


class ClassificationTask(Task):
    """Inputs named as the backbone's inputs; outputs `probabilities` [batch, classes] and `class_id` [batch]."""

    parity_outputs = ("probabilities",)
    quality = "accuracy"
    examples_signature = EXAMPLES_SIGNATURE
    multi_label = False  # whether an example holds any number of the classes

    def load(self, data_config, label_names=None):
        examples = super().load(data_config, label_names)
        if isinstance(examples, Stream) and examples.multi_label and not self.multi_label:
            raise GardenError(
                f"{data_config.dataset} data holds several labels per example and task type '{self.config.type}' "
                "takes one; train it as image_multi_label_classification, or read one label with dataset=tfrecord"
            )
        num_classes = getattr(
            self.config.model.head.params, "num_classes", None
        )  # heads of choices or scores have none
        if num_classes is not None and len(examples.label_names) > num_classes:
            raise GardenError(
                f"the data has {len(examples.label_names)} labels but the head has {num_classes} classes; "
                f"set task.model.head.params.num_classes={len(examples.label_names)}"
            )
        return examples

    def metrics(self, labels, outputs):
        return metrics.classification_metrics(labels, outputs["logits"])

    def serving_outputs(self, outputs):
        logits = tf.cast(outputs["logits"], tf.float32)
        return {"probabilities": tf.nn.softmax(logits), "class_id": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    def serving_quality(self, labels, outputs):
        return float(np.mean(np.asarray(outputs["class_id"]).reshape(-1) == labels))
