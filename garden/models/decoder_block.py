"""One Gemma-style decoder block: RMSNorm before grouped-query attention with rotary positions and
before a gated GeLU MLP, each added back to the residual stream, with an optional key/value cache."""

import keras
import keras_hub
from keras import ops


class DecoderBlock(keras.layers.Layer):
    """`call(x, padding_mask)` -> x for a whole sequence (causal attention). With `cache` [batch, 2,
    cache_length, num_key_value_heads, head_dim] and `cache_index`, x holds the tokens at positions
    cache_index.. of a sequence whose earlier keys and values are in the cache: the block writes
    theirs in and returns (x, cache); `padding_mask` then covers the whole cache length. With a
    `sliding_window`, a token attends only to itself and the `sliding_window` - 1 tokens before it."""

    def __init__(
        self,
        hidden_dim,
        num_heads,
        num_key_value_heads,
        head_dim,
        intermediate_dim,
        max_wavelength=10000,
        sliding_window=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_heads % num_key_value_heads:
            raise ValueError(f"num_heads {num_heads} must be a multiple of num_key_value_heads {num_key_value_heads}")
        self.hidden_dim, self.num_heads, self.num_key_value_heads, self.head_dim = (
            hidden_dim,
            num_heads,
            num_key_value_heads,
            head_dim,
        )
        self.intermediate_dim, self.max_wavelength, self.sliding_window = (
            intermediate_dim,
            max_wavelength,
            sliding_window,
        )
        policy = dict(dtype=self.dtype_policy)
        self.attention_norm = keras.layers.RMSNormalization(name="attention_norm", **policy)
        self.query = keras.layers.EinsumDense("bld,dhk->blhk", (None, num_heads, head_dim), name="query", **policy)
        self.key_value = keras.layers.EinsumDense(
            "bld,dtnk->bltnk", (None, 2, num_key_value_heads, head_dim), name="key_value", **policy
        )
        self.rotary = keras_hub.layers.RotaryEmbedding(max_wavelength=max_wavelength, name="rotary", **policy)
        self.attention_output = keras.layers.EinsumDense(
            "blhk,hkd->bld", (None, hidden_dim), name="attention_output", **policy
        )
        self.mlp_norm = keras.layers.RMSNormalization(name="mlp_norm", **policy)
        self.gate_up = keras.layers.EinsumDense("bld,dti->blti", (None, 2, intermediate_dim), name="gate_up", **policy)
        self.down = keras.layers.EinsumDense("bli,id->bld", (None, hidden_dim), name="down", **policy)

    def call(self, x, padding_mask=None, cache=None, cache_index=0):
        normed = self.attention_norm(x)
        query = self.rotary(self.query(normed), start_index=cache_index)
        key_value = self.key_value(normed)
        key = self.rotary(key_value[:, :, 0], start_index=cache_index)
        value = key_value[:, :, 1]
        if cache is not None:  # a ring: position p is at slot p mod its length (a chunk must not wrap)
            new = ops.stack([key, value], axis=1)
            slot = ops.mod(cache_index, ops.shape(cache)[2])
            cache = ops.slice_update(cache, [0, 0, slot, 0, 0], ops.cast(new, cache.dtype))
            key, value = cache[:, 0], cache[:, 1]
        x = x + self.attention_output(self._attend(query, key, value, padding_mask, cache_index))
        gate, up = ops.unstack(self.gate_up(self.mlp_norm(x)), 2, axis=2)
        x = x + self.down(keras.activations.gelu(gate, approximate=True) * up)
        return x if cache is None else (x, cache)

    def _attend(self, query, key, value, padding_mask, cache_index):
        """Causal grouped-query attention: query [b, l, h, k] at positions cache_index.., key and value
        [b, s, n, k] in a ring of s slots (the last at position cache_index + l - 1; without a cache,
        positions 0..s-1), each of the n key/value heads shared by h / n query heads. `padding_mask`
        [b, positions] marks the positions that hold tokens."""
        batch, length = ops.shape(query)[0], ops.shape(query)[1]
        groups = self.num_heads // self.num_key_value_heads
        query = ops.reshape(query, (batch, length, self.num_key_value_heads, groups, self.head_dim))
        scores = ops.einsum("blngk,bsnk->bngls", query, key) / ops.sqrt(ops.cast(self.head_dim, query.dtype))
        query_positions = ops.arange(length)[:, None] + cache_index
        slots, last = ops.shape(key)[1], cache_index + length - 1
        key_positions = last - ops.mod(last - ops.arange(slots), slots)  # each slot's position; < 0: empty
        allowed = ops.logical_and(key_positions[None, :] <= query_positions, key_positions[None, :] >= 0)  # [l, s]
        if self.sliding_window:
            allowed = ops.logical_and(allowed, key_positions[None, :] > query_positions - self.sliding_window)
        if padding_mask is not None:
            held = ops.take(ops.cast(padding_mask, "bool"), ops.maximum(key_positions, 0), axis=1)  # [b, s]
            allowed = ops.logical_and(allowed[None], held[:, None, :])[:, None, None]
        scores = ops.where(allowed, ops.cast(scores, "float32"), -1e9)
        weights = ops.cast(ops.softmax(scores, axis=-1), value.dtype)
        attended = ops.einsum("bngls,bsnk->blngk", weights, value)
        return ops.reshape(attended, (batch, length, self.num_heads, self.head_dim))

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "intermediate_dim": self.intermediate_dim,
            "max_wavelength": self.max_wavelength,
            "sliding_window": self.sliding_window,
        }
