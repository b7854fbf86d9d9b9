"""Qwen 3 (KerasHub's `Qwen3Backbone`): rotary positions, grouped-query attention with RMSNorm on each
head's queries and keys, RMSNorm, a SwiGLU MLP, tied embeddings by default, and a byte-level BPE in
Hugging Face's `tokenizer.json` (read with its added tokens, as KerasHub's `Qwen3Tokenizer` is). No
start token; a continuation ends at `<|im_end|>`, the end of a chat turn."""

import keras_hub

from garden.models.backbones.hub_decoder import HubDecoder
from garden.registry import BACKBONES
from garden.text_family import TextFamily


@BACKBONES.register("qwen3")
class Qwen3Decoder(HubDecoder):
    """Defaults are Qwen3-0.6B's shape; a checkpoint's config.json gives its own."""

    family = "qwen3"
    hub_backbone = keras_hub.models.Qwen3Backbone
    text_family = TextFamily(
        hub_tokenizer="Qwen3Tokenizer",
        tokenizers=("byte_bpe",),
        vocabulary_file="tokenizer.json",
        hf_model_types=("qwen3",),
        stops_at_end_token=True,
    )
    hf_epsilon = "rms_norm_eps"

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

    def embed(self, hub, token_ids, padding_mask, start):
        return hub.token_embedding(token_ids)
