"""Sentence embedding head (sentence-transformers): the pooled vector, optionally projected to `dims`,
L2-normalized so that a dot product is the cosine similarity."""

import keras
from keras import ops

from garden.registry import HEADS


@HEADS.register("embedding")
class EmbeddingHead(keras.layers.Layer):
    """`pooled_output` [batch, width] -> {"embedding": [batch, dims or width]} in float32."""

    features = "pooled_output"

    def __init__(self, dims: int = 0, normalize: bool = True, **kwargs):
        super().__init__(**kwargs)
        if dims < 0:
            raise ValueError(f"dims must be 0 (no projection) or more, got {dims}")
        self.dims = dims
        self.normalize = normalize
        self.projection = keras.layers.Dense(dims, name="projection", dtype="float32") if dims else None

    def build(self, input_shape):
        if self.projection is not None:
            self.projection.build(input_shape)

    def call(self, features):
        vectors = ops.cast(features, "float32")
        if self.projection is not None:
            vectors = self.projection(vectors)
        if self.normalize:
            vectors = vectors / ops.maximum(ops.norm(vectors, axis=-1, keepdims=True), 1e-12)
        return {"embedding": vectors}

    def get_config(self):
        return {**super().get_config(), "dims": self.dims, "normalize": self.normalize}
