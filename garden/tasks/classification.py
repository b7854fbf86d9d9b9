"""Classification: integer labels, cross-entropy, accuracy (served by garden.export.serving.classification)."""

from garden import metrics
from garden.data.streams import Stream
from garden.errors import GardenError
from garden.tasks.task import Task


class ClassificationTask(Task):
    """Inputs named as the backbone's inputs; the head's `logits` [batch, classes]."""

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
