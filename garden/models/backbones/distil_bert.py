"""DistilBERT text encoder: KerasHub's `DistilBertBackbone` (no segment embeddings, no pooler) with
`cls` (the first token's vector) or `mean` pooling."""

import keras_hub

from garden.models.backbones.text_encoder import TextEncoder
from garden.registry import BACKBONES
from garden.text_family import WORDPIECE_SPECIAL_TOKENS, TextFamily


@BACKBONES.register("distil_bert")
class DistilBertEncoder(TextEncoder):
    """Inputs `token_ids`, `padding_mask` [batch, length]; outputs `sequence_output` [batch, length,
    hidden_dim] and `pooled_output` [batch, hidden_dim]."""

    family = "distil_bert"
    text_family = TextFamily(
        tokenizers=("wordpiece",),
        special_tokens=WORDPIECE_SPECIAL_TOKENS,
        vocabulary_file="vocab.txt",
        hf_model_types=("distilbert",),
        hf_sizes={  # DistilBERT's config.json names its sizes its own way
            "vocabulary_size": "vocab_size",
            "num_layers": "n_layers",
            "num_heads": "n_heads",
            "hidden_dim": "dim",
            "intermediate_dim": "hidden_dim",
            "max_sequence_length": "max_position_embeddings",
        },
    )
    text_inputs = ("token_ids", "padding_mask")
    hf_prefix = "distilbert."
    keras_hub_converts = True
    hub_backbone = keras_hub.models.DistilBertBackbone

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
        super().__init__(dtype=dtype, **kwargs)
