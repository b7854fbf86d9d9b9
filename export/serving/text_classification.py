"""Text classifiers serve raw strings (`text`, and `text_pair` for pair data) as `serving_default`,
tokenized and packed in the graph, and token ids as `serving_tokens`."""

import tensorflow as tf

from garden.export.serving.classification import ClassificationServing
from garden.export.serving.multi_label import MultiLabelServing
from garden.export.serving.text import TextServing
from garden.registry import SERVINGS
from garden.tasks.text_classification import SEGMENTS


@SERVINGS.register("text_classification")
class TextClassificationServing(TextServing, ClassificationServing):
    raw_signature = "serving_default"
    tensor_signature = "serving_tokens"

    def raw_serving(self, model, feature_names):
        task, names = self.task, [name for name in SEGMENTS if name in feature_names]
        specs = {name: tf.TensorSpec([None], tf.string, name=name) for name in names}
        return specs, lambda raw: task.pack_in_serving(*task.serving_segments([raw[name] for name in names]))


@SERVINGS.register("text_multi_label_classification")
class TextMultiLabelClassificationServing(MultiLabelServing, TextClassificationServing):
    """Served as text classification is, with multi-label outputs."""
