"""DistilBERT text encoder: KerasHub's `DistilBertBackbone` (no segment embeddings, no pooler) with
`cls` (the first token's vector) or `mean` pooling."""

import keras
import keras_hub

from garden.models.backbones.backbone import WORDPIECE_SPECIAL_TOKENS, Backbone
from garden.models.pooling import MaskedMeanPooling, check_pooling
from garden.registry import BACKBONES


@BACKBONES.register("distil_bert")
class DistilBertEncoder(Backbone):
    """Inputs `token_ids`, `padding_mask` [batch, length]; outputs `sequence_output` [batch, length,
    hidden_dim] and `pooled_output` [batch, hidden_dim]."""

    tokenizers = ("wordpiece",)
    special_tokens = WORDPIECE_SPECIAL_TOKENS

    text_inputs = ("token_ids", "padding_mask")

    def __init__(
        self,
        vocabulary_size=30522,
        num_layers=2,
        num_heads=2,
        hidden_dim=128,
        intermediate_dim=512,
        dropout=0.1,
        max_sequence_length=512,
        pooling="cls",
        dtype=None,
        **kwargs,
    ):
        check_pooling("distil_bert", pooling)
        arguments = dict(
            vocabulary_size=vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            max_sequence_length=max_sequence_length,
        )
        encoder = keras_hub.models.DistilBertBackbone(**arguments, dtype=dtype, name="encoder")
        inputs = self.text_input_layers()
        sequence = encoder(inputs)
        if pooling == "mean":
            pooled = MaskedMeanPooling(name="mean_pooling", dtype=dtype)(sequence, inputs["padding_mask"])
        else:
            pooled = keras.layers.Lambda(lambda x: x[:, 0], name="cls_pooling", dtype=dtype)(sequence)
        super().__init__(
            inputs=inputs, outputs={"sequence_output": sequence, "pooled_output": pooled}, dtype=dtype, **kwargs
        )
        self.keep_arguments(**arguments, pooling=pooling)
