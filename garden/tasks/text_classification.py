"""Text classification: a sentence (`text`) or a sentence pair (`text`, `text_pair`) -> a class.

Use the `classification` head for single sentences and `pair_classification` for pairs."""

from garden.registry import TASKS
from garden.tasks.classification import ClassificationTask
from garden.tasks.text import TextTask

SEGMENTS = ("text", "text_pair")


@TASKS.register("text_classification")
class TextClassificationTask(TextTask, ClassificationTask):
    def preprocess(self, features):
        return self.pack(*(self.tokenizer(features[name]) for name in SEGMENTS if name in features))
