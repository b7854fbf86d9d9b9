"""Text regression (STS-B): a sentence or pair -> a float score; Pearson and Spearman correlations."""

from garden import metrics
from garden.registry import TASKS
from garden.tasks.text_classification import TextClassificationTask


@TASKS.register("text_regression")
class TextRegressionTask(TextClassificationTask):
    """Inputs as text classification; the `regression` head's `logits` are the scores [batch]."""

    def metrics(self, labels, outputs):
        return metrics.regression_metrics(labels, outputs["logits"])
