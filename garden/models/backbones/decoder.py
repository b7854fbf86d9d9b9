"""A Gemma-style decoder-only transformer (gemma_pytorch's design in Keras 3): token embeddings
scaled by sqrt(width), DecoderBlocks (RMSNorm, rotary positions, grouped-query attention, gated
GeLU MLP), a final RMSNorm and logits from the transposed (tied) embedding."""

import math

import keras
from keras import ops

from garden.models import kv_cache
from garden.models.backbones.backbone import Backbone
from garden.models.decoder_block import DecoderBlock
from garden.models.output_logits import output_logits
from garden.registry import BACKBONES
from garden.text_family import TextFamily


@BACKBONES.register("decoder")
class DecoderBackbone(Backbone):
    """Inputs `token_ids`, `padding_mask` [batch, length]; outputs `sequence_output` [batch, length,
    width] and `token_logits` [batch, length, vocabulary] (float32). `decode` runs the same network
    one chunk at a time over a key/value cache, for generation. A `sliding_window` (Mistral's, Gemma
    2's) lets each token attend to that many tokens at most: set it to the training length, and a
    text longer than any seen in training is read the way training read it."""

    text_family = TextFamily(
        tokenizers=("character", "sentencepiece"),
    )

    text_inputs = ("token_ids", "padding_mask")

    def __init__(
        self,
        vocabulary_size=256,
        num_layers=4,
        num_heads=4,
        num_key_value_heads=1,
        hidden_dim=128,
        intermediate_dim=256,
        head_dim=None,
        max_wavelength=10000,
        sliding_window=None,
        dtype=None,
        **kwargs,
    ):
        head_dim = head_dim or hidden_dim // num_heads
        inputs = self.text_input_layers()
        embedding = keras.layers.ReversibleEmbedding(
            vocabulary_size,
            hidden_dim,
            reverse_dtype="float32",
            name="token_embedding",
            dtype=dtype,
            embeddings_initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "untruncated_normal"),
        )
        blocks = [
            DecoderBlock(
                hidden_dim,
                num_heads,
                num_key_value_heads,
                head_dim,
                intermediate_dim,
                max_wavelength,
                sliding_window,
                name=f"block_{i}",
                dtype=dtype,
            )
            for i in range(num_layers)
        ]
        scale = keras.layers.Rescaling(math.sqrt(hidden_dim), name="embedding_scale", dtype=dtype)
        final_norm = keras.layers.RMSNormalization(name="final_norm", dtype=dtype)
        x = scale(embedding(inputs["token_ids"]))
        for block in blocks:
            x = block(x, padding_mask=inputs["padding_mask"])
        sequence = final_norm(x)
        logits = embedding(sequence, reverse=True)
        super().__init__(
            inputs=inputs, outputs={"sequence_output": sequence, "token_logits": logits}, dtype=dtype, **kwargs
        )
        self.embedding, self.scale, self.blocks, self.final_norm = embedding, scale, blocks, final_norm
        self.keep_arguments(head_dim=head_dim)

    def cache_length(self, prompt_length, new_tokens):
        """Slots of the key/value cache that generates `new_tokens` after a prompt: one per position,
        or with a sliding window a ring of max(prompt, window) slots, so each new token costs the same."""
        if self.sliding_window:
            return ops.minimum(prompt_length + new_tokens, ops.maximum(prompt_length, self.sliding_window))
        return prompt_length + new_tokens

    def empty_cache(self, batch_size, length):
        """Zeros [layers, batch, 2, length, key/value heads, head_dim] in the compute dtype."""
        return ops.zeros(
            (self.num_layers, batch_size, 2, length, self.num_key_value_heads, self.head_dim), self.compute_dtype
        )

    def decode(self, token_ids, padding_mask, cache, cache_index):
        """Logits [batch, chunk, vocabulary] of `token_ids` [batch, chunk] at positions cache_index..,
        attending to the cache (and to each other, causally); returns (logits, the updated cache, in the
        form it was given: garden/models/kv_cache.py).
        `padding_mask` [batch, positions] marks the positions that hold tokens; past the cache's length,
        position p is at slot p mod that length (a chunk must not wrap: see `cache_length`)."""
        x = self.scale(self.embedding(token_ids))
        layers = []
        for block, layer_cache in zip(self.blocks, kv_cache.layer_caches(cache, self.num_layers)):  # TFLite: <= 5-D
            x, layer_cache = block(x, padding_mask=padding_mask, cache=layer_cache, cache_index=cache_index)
            layers.append(layer_cache)
        return output_logits(self.embedding, self.final_norm(x)), kv_cache.same_form(cache, layers)
