"""Text regression (STS-B): a sentence or pair -> a float score; Pearson and Spearman correlations."""

import tensorflow as tf

from garden import metrics
from garden.registry import TASKS
from garden.tasks.text_classification import TextClassificationTask


@TASKS.register("text_regression")
class TextRegressionTask(TextClassificationTask):
    """Inputs as text classification; the `regression` head's `logits` are the scores [batch]."""

    parity_outputs = ("score",)
    quality = "pearson"

    def metrics(self, labels, outputs):
        return metrics.regression_metrics(labels, outputs["logits"])

    def serving_outputs(self, outputs):
        return {"score": tf.cast(outputs["logits"], tf.float32)}

    def serving_quality(self, labels, outputs):
        return metrics.pearson(labels, outputs["score"])
