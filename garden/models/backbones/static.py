"""Static token embeddings (model2vec): an embedding table and a mean over the unpadded tokens."""

import os

import keras
import numpy as np

from garden.errors import GardenError
from garden.models.backbones.backbone import WORDPIECE_SPECIAL_TOKENS, Backbone
from garden.models.pooling import MaskedMeanPooling
from garden.registry import BACKBONES


def load_table(path):
    """The embedding table [vocabulary, dims] of a `garden distill static` folder."""
    file = os.path.join(path, "embeddings.npy")
    if not os.path.isfile(file):
        raise GardenError(f"no embeddings.npy in {path}; make one with 'garden distill static --out {path}'")
    return np.load(file)


@BACKBONES.register("static")
class StaticEmbedding(Backbone):
    """Inputs `token_ids`, `padding_mask` [batch, length]; outputs `sequence_output` (each token's row)
    and `pooled_output` (their mean over unpadded tokens). `distilled_path` is a `garden distill static` folder
    whose table initializes the embeddings (and sets their size); without it the table starts random."""

    tokenizers = ("wordpiece",)
    special_tokens = WORDPIECE_SPECIAL_TOKENS
    asset_params = ("distilled_path",)  # its table sets the embeddings' shape, so inference needs it too

    text_inputs = ("token_ids", "padding_mask")

    def __init__(
        self, distilled_path="", vocabulary_size=30522, hidden_dim=256, trainable_embeddings=True, dtype=None, **kwargs
    ):
        table = load_table(distilled_path) if distilled_path else None
        if table is not None:
            vocabulary_size, hidden_dim = table.shape
        inputs = self.text_input_layers()
        embedding = keras.layers.Embedding(
            vocabulary_size,
            hidden_dim,
            trainable=trainable_embeddings,
            name="token_embedding",
            dtype=dtype,
            embeddings_initializer=keras.initializers.Constant(table) if table is not None else "uniform",
        )
        sequence = embedding(inputs["token_ids"])
        pooled = MaskedMeanPooling(name="mean_pooling", dtype=dtype)(sequence, inputs["padding_mask"])
        super().__init__(
            inputs=inputs, outputs={"sequence_output": sequence, "pooled_output": pooled}, dtype=dtype, **kwargs
        )
        self.keep_arguments(
            distilled_path=distilled_path,
            vocabulary_size=vocabulary_size,
            hidden_dim=hidden_dim,
            trainable_embeddings=trainable_embeddings,
        )
