"""BERT text encoder: KerasHub's `BertBackbone` with `cls` or `mean` pooling, trained padding-free
(garden/models/backbones/padding_free.py) unless XLA compiles the training step."""

import keras_hub

from garden.errors import GardenError
from garden.models.backbones.padding_free import PaddingFreeBertBackbone
from garden.models.backbones.text_encoder import TextEncoder
from garden.registry import BACKBONES
from garden.text_family import HF_SIZES, WORDPIECE_SPECIAL_TOKENS, TextFamily


@BACKBONES.register("bert")
class BertEncoder(TextEncoder):
    """Inputs `token_ids`, `segment_ids`, `padding_mask` [batch, length]; outputs `sequence_output`
    [batch, length, hidden_dim] and `pooled_output` [batch, hidden_dim]: BERT's pooler on [CLS]
    (`pooling="cls"`) or the mean over unpadded tokens (`pooling="mean"`, as sentence-transformers).
    Training is padding-free by default: on the real tokens only, the same function at every real
    position, faster by about the padding's share. Pad positions of `sequence_output` are then zeros in
    training, which no head reads (span_qa masks them). A task whose head reads the [CLS]-pooled output
    alone computes the last layer at [CLS] only (`train_for`). `padding_free=None` (the default) trains
    padded where XLA compiles the step (`runtime.enable_xla`, TPUs), which cannot take a token count that
    changes with every batch; `true` insists (refused with XLA), `false` always trains padded.
    """

    family = "bert"
    uses_pooler = True
    text_family = TextFamily(
        tokenizers=("wordpiece",),
        special_tokens=WORDPIECE_SPECIAL_TOKENS,
        vocabulary_file="vocab.txt",
        hf_model_types=("bert",),
        hf_sizes={**HF_SIZES, "max_sequence_length": "max_position_embeddings", "num_segments": "type_vocab_size"},
    )
    hf_prefix = "bert."
    keras_hub_converts = True
    hub_backbone = keras_hub.models.BertBackbone

    def __init__(
        self,
        vocabulary_size=30522,
        num_layers=2,
        num_heads=2,
        hidden_dim=128,
        intermediate_dim=512,
        dropout=0.1,
        max_sequence_length=512,
        num_segments=2,
        pooling="cls",
        padding_free: bool | None = None,
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)

    def encoder_class(self):
        """KerasHub's padded `BertBackbone` with `padding_free=false`, else the padding-free one."""
        return self.hub_backbone if self.padding_free is False else PaddingFreeBertBackbone

    @staticmethod
    def keras_hub_key(key):
        """KerasHub's BERT converter reads LayerNorm `gamma`/`beta`."""
        return key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")

    def train_for(self, features):
        if self.padding_free:  # a [CLS]-pooled head needs the last layer at [CLS] only
            self.encoder.pooled_only = features == "pooled_output" and self.pooling == "cls"

    def check_training(self, runtime):
        compiled = runtime.enable_xla or runtime.distribution_strategy == "tpu"
        if compiled and self.padding_free:
            raise GardenError(
                "task.model.backbone.params.padding_free=true cannot be compiled by XLA (its token count changes "
                "with every batch); set runtime.enable_xla=false or leave padding_free unset"
            )
        if self.padding_free is None:
            self.encoder.unpadded = not compiled
