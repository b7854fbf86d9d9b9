"""Extractive question answering head (SQuAD): start and end logits for every token."""

from garden.models.heads.classification import ClassificationHead
from garden.registry import HEADS


@HEADS.register("span_qa")
class SpanQAHead(ClassificationHead):
    """`sequence_output` [batch, length, width] -> logits [batch, length, 2]: `[..., 0]` scores each
    token as the answer's start, `[..., 1]` as its end."""

    features = "sequence_output"

    def __init__(self, dropout: float = 0.0, **kwargs):
        kwargs.pop("num_classes", None)
        super().__init__(num_classes=2, dropout=dropout, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["num_classes"]
        return config
