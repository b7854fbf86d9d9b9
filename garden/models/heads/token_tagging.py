"""Token tagging head (NER, POS): a tag's logits for every token of the sequence."""

from garden.models.heads.classification import ClassificationHead
from garden.registry import HEADS


@HEADS.register("token_tagging")
class TokenTaggingHead(ClassificationHead):
    """`sequence_output` [batch, length, width] -> logits [batch, length, num_classes] in float32."""

    features = "sequence_output"
