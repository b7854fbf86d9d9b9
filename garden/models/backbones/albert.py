"""ALBERT text encoder: KerasHub's `AlbertBackbone` (factorized embeddings, layers shared within
groups) read through a SentencePiece model (`spiece.model`); pairs packed as BERT's. Checkpoints
import through KerasHub's own ALBERT converter."""

import keras_hub

from garden.models.backbones.text_encoder import TextEncoder, hf_activation, require
from garden.registry import BACKBONES
from garden.text_family import HF_SIZES, TextFamily


@BACKBONES.register("albert")
class AlbertEncoder(TextEncoder):
    """Inputs `token_ids`, `segment_ids`, `padding_mask` [batch, length]; outputs `sequence_output`
    [batch, length, hidden_dim] and `pooled_output` [batch, hidden_dim] (`cls`: ALBERT's pooler on
    [CLS]; `mean`). `num_layers` layers run `num_groups` distinct sets of weights."""

    family = "albert"
    uses_pooler = True
    text_family = TextFamily(
        tokenizers=("sentencepiece",),
        hub_tokenizer="AlbertTokenizer",
        vocabulary_file="spiece.model",
        lowercase_kinds=("sentencepiece",),  # as transformers' AlbertTokenizer: lowercased, accents stripped
        special_tokens={"start": "[CLS]", "end": "[SEP]", "pad": "<pad>", "mask": "[MASK]"},
        hf_model_types=("albert",),
        hf_sizes={
            **HF_SIZES,
            "embedding_dim": "embedding_size",
            "num_groups": "num_hidden_groups",
            "num_inner_repetitions": "inner_group_num",
            "max_sequence_length": "max_position_embeddings",
            "num_segments": "type_vocab_size",
        },
    )
    hf_prefix = "albert."
    keras_hub_converts = True
    hub_backbone = keras_hub.models.AlbertBackbone

    def __init__(
        self,
        vocabulary_size=30000,
        num_layers=2,
        num_heads=2,
        embedding_dim=128,
        hidden_dim=128,
        intermediate_dim=512,
        num_groups=1,
        num_inner_repetitions=1,
        dropout=0.0,
        max_sequence_length=512,
        num_segments=2,
        activation="gelu_approximate",
        pooling="cls",
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)

    @classmethod
    def hf_settings(cls, config):
        require(config, "layer_norm_eps", 1e-12, cls.family)
        return {"activation": hf_activation(config, cls.family)}
