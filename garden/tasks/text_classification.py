"""Text classification: a sentence (`text`) or a sentence pair (`text`, `text_pair`) -> a class, or
any number of classes (`text_multi_label_classification`, with the `multi_label` head).

Use the `classification` head for single sentences and `pair_classification` for pairs."""

import tensorflow as tf

from garden.registry import TASKS
from garden.tasks.classification import ClassificationTask
from garden.tasks.multi_label import MultiLabelTask
from garden.tasks.text import TextTask

SEGMENTS = ("text", "text_pair")


@TASKS.register("text_classification")
class TextClassificationTask(TextTask, ClassificationTask):
    """Serves raw strings (`text`, and `text_pair` for pair data) as `serving_default`, tokenized in
    the graph, and token ids as `serving_tokens`."""

    raw_signature = "serving_default"
    tensor_signature = "serving_tokens"

    def preprocess(self, features):
        return self.pack(*(self.tokenizer(features[name]) for name in SEGMENTS if name in features))

    def raw_serving(self, model, feature_names):
        names = [name for name in SEGMENTS if name in feature_names]
        specs = {name: tf.TensorSpec([None], tf.string, name=name) for name in names}
        return specs, lambda raw: self.pack_in_serving(*self.serving_segments([raw[name] for name in names]))


@TASKS.register("text_multi_label_classification")
class TextMultiLabelClassificationTask(MultiLabelTask, TextClassificationTask):
    """Multi-label classification of raw strings (garden/tasks/multi_label.py), served as text classification is."""
