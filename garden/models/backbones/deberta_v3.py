"""DeBERTa-v3 text encoder: KerasHub's `DebertaV3Backbone` (disentangled attention over bucketed
relative positions, no position embeddings, no segment ids) read through a SentencePiece model
(`spm.model`, `[MASK]` after its pieces as KerasHub's `DebertaV3Tokenizer` adds it)."""

import keras_hub

from garden.models.backbones.text_encoder import TextEncoder, layer_norm, require, transformer_layer
from garden.registry import BACKBONES
from garden.text_family import HF_SIZES, TextFamily

# The settings of Hugging Face's deberta-v2 model type that DeBERTa-v3 uses and KerasHub computes
V3_SETTINGS = {
    "relative_attention": True,
    "position_biased_input": False,
    "share_att_key": True,
    "norm_rel_ebd": "layer_norm",
    "max_relative_positions": -1,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-7,
    "type_vocab_size": 0,
}


@BACKBONES.register("deberta_v3")
class DebertaV3Encoder(TextEncoder):
    """Inputs `token_ids`, `padding_mask` [batch, length]; outputs `sequence_output` [batch, length,
    hidden_dim] and `pooled_output` [batch, hidden_dim] (`cls`: the [CLS] vector; `mean`)."""

    family = "deberta_v3"
    text_family = TextFamily(
        tokenizers=("sentencepiece",),
        hub_tokenizer="DebertaV3Tokenizer",
        vocabulary_file="spm.model",
        special_tokens={"start": "[CLS]", "end": "[SEP]", "pad": "[PAD]", "mask": "[MASK]"},
        hf_model_types=("deberta-v2",),
        hf_sizes={**HF_SIZES, "max_sequence_length": "max_position_embeddings", "bucket_size": "position_buckets"},
    )
    text_inputs = ("token_ids", "padding_mask")
    hf_prefix = "deberta."
    hub_backbone = keras_hub.models.DebertaV3Backbone

    def __init__(
        self,
        vocabulary_size=128100,
        num_layers=2,
        num_heads=2,
        hidden_dim=128,
        intermediate_dim=512,
        dropout=0.1,
        max_sequence_length=512,
        bucket_size=256,
        pooling="cls",
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)

    @classmethod
    def hf_settings(cls, config):
        for key, value in V3_SETTINGS.items():
            require(config, key, value, cls.family)
        attention = config.get("pos_att_type", [])
        attention = attention.split("|") if isinstance(attention, str) else attention
        require({"pos_att_type": sorted(attention)}, "pos_att_type", ["c2p", "p2c"], cls.family)
        require(config, "embedding_size", config["hidden_size"], cls.family)
        return {}

    def hf_weights(self, tensor, config):
        weights = {
            "token_embedding/embeddings": tensor("embeddings.word_embeddings.weight"),
            **layer_norm(tensor, "embeddings.LayerNorm", "embeddings_layer_norm"),
            "rel_embedding/rel_embedding": tensor("encoder.rel_embeddings.weight"),
            **layer_norm(tensor, "encoder.LayerNorm", "rel_embedding/rel_embeddings_layer_norm"),
        }
        projections = ("query_proj", "key_proj", "value_proj")
        for index in range(self.num_layers):
            hf, ours = f"encoder.layer.{index}.", f"disentangled_attention_encoder_layer_{index}/"
            weights.update(transformer_layer(tensor, hf, ours, projections))
        return weights
