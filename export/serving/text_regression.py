"""Text regressions serve as text classifiers do, with a `score` [batch] judged by Pearson's r."""

import tensorflow as tf

from garden import metrics
from garden.export.serving.text_classification import TextClassificationServing
from garden.registry import SERVINGS


@SERVINGS.register("text_regression")
class TextRegressionServing(TextClassificationServing):
    parity_outputs = ("score",)
    quality = "pearson"

    def serving_outputs(self, outputs):
        return {"score": tf.cast(outputs["logits"], tf.float32)}

    def serving_quality(self, labels, outputs):
        return metrics.pearson(labels, outputs["score"])
