"""Text classification: a sentence (`text`) or a sentence pair (`text`, `text_pair`) -> a class, or
any number of classes (`text_multi_label_classification`, with the `multi_label` head).

Use the `classification` head for single sentences and `pair_classification` for pairs."""

from garden.registry import TASKS
from garden.tasks.classification import ClassificationTask
from garden.tasks.multi_label import MultiLabelTask
from garden.tasks.text import TextTask

SEGMENTS = ("text", "text_pair")


@TASKS.register("text_classification")
class TextClassificationTask(TextTask, ClassificationTask):
    """Features `text`, and `text_pair` for pair data."""

    def preprocess(self, features):
        return self.pack(*(self.tokenizer(features[name]) for name in SEGMENTS if name in features))


@TASKS.register("text_multi_label_classification")
class TextMultiLabelClassificationTask(MultiLabelTask, TextClassificationTask):
    """Multi-label classification of raw strings (garden/tasks/multi_label.py)."""
