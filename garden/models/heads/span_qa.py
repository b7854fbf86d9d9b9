"""Extractive question answering head (SQuAD): start and end logits for every token, pad positions
masked out so that they take no probability in training and are never predicted."""

from keras import ops

from garden.models.heads.classification import ClassificationHead
from garden.registry import HEADS

PAD_LOGIT = -1e9


@HEADS.register("span_qa")
class SpanQAHead(ClassificationHead):
    """`sequence_output` [batch, length, width] -> logits [batch, length, 2]: `[..., 0]` scores each
    token as the answer's start, `[..., 1]` as its end; positions where `padding_mask` is 0 score
    `PAD_LOGIT`. The logits at real positions are then the same however much a batch is padded, and
    the same whether the backbone computed the pads (padded) or skipped them (padding-free)."""

    features = "sequence_output"
    reads_padding_mask = True

    def __init__(self, dropout: float = 0.0, **kwargs):
        kwargs.pop("num_classes", None)
        super().__init__(num_classes=2, dropout=dropout, **kwargs)

    def call(self, features, padding_mask=None, training=False):
        logits = super().call(features, training=training)
        if padding_mask is None:
            return logits
        real = ops.expand_dims(ops.cast(padding_mask, "bool"), -1)
        return ops.where(real, logits, ops.full_like(logits, PAD_LOGIT))

    def get_config(self):
        config = super().get_config()
        del config["num_classes"]
        return config
