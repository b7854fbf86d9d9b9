"""RoBERTa text encoder: KerasHub's `RobertaBackbone` (no segment ids, no pooler) read through a
byte-level BPE tokenizer (`vocab.json` + `merges.txt`), pairs packed as `<s> a </s></s> b </s>`."""

import keras_hub
import numpy as np

from garden.models.backbones.text_encoder import TextEncoder, layer_norm, require, transformer_layer
from garden.registry import BACKBONES
from garden.text_family import HF_SIZES, TextFamily

ROBERTA_SPECIAL_TOKENS = {"start": "<s>", "end": "</s>", "pad": "<pad>", "mask": "<mask>"}


@BACKBONES.register("roberta")
class RobertaEncoder(TextEncoder):
    """Inputs `token_ids`, `padding_mask` [batch, length]; outputs `sequence_output` [batch, length,
    hidden_dim] and `pooled_output` [batch, hidden_dim] (`cls`: the `<s>` vector; `mean`)."""

    family = "roberta"
    text_family = TextFamily(
        tokenizers=("byte_bpe",),
        hub_tokenizer="RobertaTokenizer",
        vocabulary_file="vocab.json",
        special_tokens=ROBERTA_SPECIAL_TOKENS,
        separator_tokens=2,
        hf_model_types=("roberta",),
        hf_sizes=HF_SIZES,
    )
    text_inputs = ("token_ids", "padding_mask")
    hf_prefix = "roberta."
    hub_backbone = keras_hub.models.RobertaBackbone

    def __init__(
        self,
        vocabulary_size=50265,
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

    @classmethod
    def hf_settings(cls, config):
        for key, value in (("hidden_act", "gelu"), ("layer_norm_eps", 1e-5), ("position_embedding_type", "absolute")):
            require(config, key, value, cls.family)
        # positions start after the padding id: a real token at j reads row pad_token_id + 1 + j
        return {"max_sequence_length": config["max_position_embeddings"] - config.get("pad_token_id", 1) - 1}

    def hf_weights(self, tensor, config):
        first = config.get("pad_token_id", 1) + 1
        positions = tensor("embeddings.position_embeddings.weight")[first : first + self.max_sequence_length]
        # one segment type: its embedding is added at every position
        segment = tensor("embeddings.token_type_embeddings.weight")[0]
        weights = {
            "embeddings/token_embedding/embeddings": tensor("embeddings.word_embeddings.weight"),
            "embeddings/position_embedding/embeddings": positions + segment[np.newaxis],
            **layer_norm(tensor, "embeddings.LayerNorm", "embeddings_layer_norm"),
        }
        for index in range(self.num_layers):
            weights.update(transformer_layer(tensor, f"encoder.layer.{index}.", f"transformer_layer_{index}/"))
        return weights
