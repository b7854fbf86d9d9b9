"""Llama (KerasHub's `LlamaBackbone`): rotary positions (with Llama 3.1's frequency scaling),
grouped-query attention, RMSNorm and a SwiGLU MLP; Llama 2's SentencePiece vocabulary
(`tokenizer.model`) or Llama 3's byte-level BPE (`tokenizer.json`, read by KerasHub's `Llama3Tokenizer`)."""

import keras_hub

from garden.models.backbones.hub_decoder import HubDecoder
from garden.registry import BACKBONES
from garden.text_family import TextFamily


@BACKBONES.register("llama")
class LlamaDecoder(HubDecoder):
    """Defaults are Llama 2 7B's shape; a checkpoint's config.json gives its own."""

    family = "llama"
    hub_backbone = keras_hub.models.LlamaBackbone
    text_family = TextFamily(
        hub_tokenizer="LlamaTokenizer",
        tokenizers=("sentencepiece", "byte_bpe"),
        other_hub_tokenizers={"byte_bpe": "Llama3Tokenizer"},
        vocabulary_file="tokenizer.model",
        hf_model_types=("llama",),
        starts_with_token=True,
        stops_at_end_token=True,
    )
    hf_epsilon = "rms_norm_eps"

    def __init__(
        self,
        vocabulary_size=32000,
        num_layers=32,
        num_query_heads=32,
        hidden_dim=4096,
        intermediate_dim=11008,
        num_key_value_heads=32,
        rope_max_wavelength=10000,
        rope_position_scaling_factor=1.0,
        rope_frequency_adjustment_factor=None,
        rope_low_freq_factor=None,
        rope_high_freq_factor=None,
        rope_pretraining_sequence_length=None,
        layer_norm_epsilon=1e-5,
        dropout=0.0,
        tie_word_embeddings=False,
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)

    def cache_heads(self):
        return self.num_key_value_heads, self.hidden_dim // self.num_query_heads

    def embed(self, hub, token_ids, padding_mask, start):
        return hub.token_embedding(token_ids)
