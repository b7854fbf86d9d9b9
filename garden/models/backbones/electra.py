"""ELECTRA text encoder (the discriminator): KerasHub's `ElectraBackbone`, WordPiece ids as BERT's.
Its embeddings may be narrower than the hidden layers (`embedding_dim`, projected up); it has no
trained pooler, so `cls` pooling reads the [CLS] vector as Hugging Face's ELECTRA classifiers do."""

import keras_hub

from garden.models.backbones.text_encoder import (
    TextEncoder,
    dense,
    hf_activation,
    layer_norm,
    require,
    transformer_layer,
)
from garden.registry import BACKBONES
from garden.text_family import HF_SIZES, WORDPIECE_SPECIAL_TOKENS, TextFamily


@BACKBONES.register("electra")
class ElectraEncoder(TextEncoder):
    """Inputs `token_ids`, `segment_ids`, `padding_mask` [batch, length]; outputs `sequence_output`
    [batch, length, hidden_dim] and `pooled_output` [batch, hidden_dim]. `activation` is the
    feed-forward GELU: `gelu` (Hugging Face's ELECTRA configs) or `gelu_approximate` (KerasHub's presets)."""

    family = "electra"
    text_family = TextFamily(
        tokenizers=("wordpiece",),
        special_tokens=WORDPIECE_SPECIAL_TOKENS,
        vocabulary_file="vocab.txt",
        hf_model_types=("electra",),
        hf_sizes={
            **HF_SIZES,
            "embedding_dim": "embedding_size",
            "max_sequence_length": "max_position_embeddings",
            "num_segments": "type_vocab_size",
        },
    )
    hf_prefix = "electra."
    hub_backbone = keras_hub.models.ElectraBackbone
    hub_names = {"vocabulary_size": "vocab_size"}

    def __init__(
        self,
        vocabulary_size=30522,
        num_layers=2,
        num_heads=2,
        hidden_dim=128,
        embedding_dim=128,
        intermediate_dim=512,
        dropout=0.1,
        max_sequence_length=512,
        num_segments=2,
        activation="gelu",
        pooling="cls",
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)

    @classmethod
    def hf_settings(cls, config):
        require(config, "layer_norm_eps", 1e-12, cls.family)
        require(config, "position_embedding_type", "absolute", cls.family)
        return {"activation": hf_activation(config, cls.family)}

    def hf_weights(self, tensor, config):
        weights = {
            "token_embedding/embeddings": tensor("embeddings.word_embeddings.weight"),
            "position_embedding/embeddings": tensor("embeddings.position_embeddings.weight"),
            "segment_embedding/embeddings": tensor("embeddings.token_type_embeddings.weight"),
            **layer_norm(tensor, "embeddings.LayerNorm", "embeddings_layer_norm"),
        }
        if self.embedding_dim != self.hidden_dim:
            weights.update(dense(tensor, "embeddings_project", "embeddings_projection"))
        for index in range(self.num_layers):
            weights.update(transformer_layer(tensor, f"encoder.layer.{index}.", f"transformer_layer_{index}/"))
        pooler = self.encoder.get_layer("pooled_dense")  # unused (no pooler in the checkpoint): kept as built
        weights.update({variable.path: variable.numpy() for variable in pooler.weights})
        return weights
