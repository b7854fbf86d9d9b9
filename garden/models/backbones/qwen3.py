"""Qwen 3 (KerasHub's `Qwen3Backbone`): rotary positions, grouped-query attention with RMSNorm on each
head's queries and keys, RMSNorm, a SwiGLU MLP, tied embeddings by default, and a byte-level BPE in
Hugging Face's `tokenizer.json` (read with its added tokens, as KerasHub's `Qwen3Tokenizer` is). No
start token; a continuation ends at `<|im_end|>`, the end of a chat turn."""

import dataclasses

import keras_hub

from garden.models.backbones.qwen2 import Qwen2Decoder
from garden.registry import BACKBONES


@BACKBONES.register("qwen3")
class Qwen3Decoder(Qwen2Decoder):
    """Defaults are Qwen3-0.6B's shape; a checkpoint's config.json gives its own. Qwen 2's embedding
    and layer arguments; its own KerasHub classes, head_dim and constructor arguments."""

    family = "qwen3"
    hub_backbone = keras_hub.models.Qwen3Backbone
    text_family = dataclasses.replace(
        Qwen2Decoder.text_family, hub_tokenizer="Qwen3Tokenizer", hf_model_types=("qwen3",)
    )

    def __init__(
        self,
        vocabulary_size=151936,
        num_layers=28,
        num_query_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        hidden_dim=1024,
        intermediate_dim=3072,
        rope_max_wavelength=1000000,
        rope_scaling_factor=1.0,
        layer_norm_epsilon=1e-6,
        dropout=0.0,
        tie_word_embeddings=True,
        sliding_window_size=None,
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)

    def cache_heads(self):
        return self.num_key_value_heads, self.head_dim
