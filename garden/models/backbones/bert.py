"""BERT-family text encoder: KerasHub's `BertBackbone` with `cls` or `mean` pooling, optionally
trained padding-free (garden/models/backbones/padding_free.py)."""

import keras_hub

from garden.errors import GardenError
from garden.models.backbones.backbone import WORDPIECE_SPECIAL_TOKENS, Backbone
from garden.models.backbones.padding_free import PaddingFreeBertBackbone
from garden.models.pooling import MaskedMeanPooling, check_pooling
from garden.registry import BACKBONES


@BACKBONES.register("bert")
class BertEncoder(Backbone):
    """Inputs `token_ids`, `segment_ids`, `padding_mask` [batch, length]; outputs `sequence_output`
    [batch, length, hidden_dim] and `pooled_output` [batch, hidden_dim]: BERT's pooler on [CLS]
    (`pooling="cls"`) or the mean over unpadded tokens (`pooling="mean"`, as sentence-transformers).
    `padding_free=True` trains on the real tokens only: the same function at every real position,
    faster by about the padding's share; pad positions of `sequence_output` are then zeros in training,
    so leave it off for heads that score every position (span_qa). A task whose head reads the
    [CLS]-pooled output alone computes the last layer at [CLS] only (`train_for`).
    """

    tokenizers = ("wordpiece",)
    special_tokens = WORDPIECE_SPECIAL_TOKENS

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
        padding_free=False,
        dtype=None,
        **kwargs,
    ):
        check_pooling("bert", pooling)
        arguments = dict(
            vocabulary_size=vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            max_sequence_length=max_sequence_length,
            num_segments=num_segments,
        )
        backbone = PaddingFreeBertBackbone if padding_free else keras_hub.models.BertBackbone
        encoder = backbone(**arguments, dtype=dtype, name="encoder")
        inputs = self.text_input_layers()
        outputs = encoder(inputs)
        pooled = outputs["pooled_output"]
        if pooling == "mean":  # BERT's pooler is then unused: keep it out of training
            encoder.get_layer("pooled_dense").trainable = False
            pooled = MaskedMeanPooling(name="mean_pooling", dtype=dtype)(
                outputs["sequence_output"], inputs["padding_mask"]
            )
        super().__init__(
            inputs=inputs,
            outputs={"sequence_output": outputs["sequence_output"], "pooled_output": pooled},
            dtype=dtype,
            **kwargs,
        )
        self.keep_arguments(**arguments, pooling=pooling, padding_free=padding_free)

    def train_for(self, features):
        if self.padding_free:  # a [CLS]-pooled head needs the last layer at [CLS] only
            self.encoder.pooled_only = features == "pooled_output" and self.pooling == "cls"

    def check_training(self, runtime):
        if runtime.enable_xla and self.padding_free:
            raise GardenError(
                "task.model.backbone.params.padding_free=true cannot be compiled by XLA (its token count changes "
                "with every batch); set runtime.enable_xla=false or padding_free=false"
            )

    @property
    def encoder(self):
        return self.get_layer("encoder")
