"""Mistral (KerasHub's `MistralBackbone`): Llama's blocks (rotary positions, grouped-query attention,
RMSNorm, a SwiGLU MLP) with an optional sliding attention window, and a SentencePiece vocabulary
(`tokenizer.model`, read by KerasHub's `MistralTokenizer`). Its Hugging Face weights carry Llama's
names, and Garden ports them with KerasHub's Llama converter: KerasHub 0.32's Mistral converter
rounds every weight to float16."""

import keras_hub

from garden.models.backbones.hub_decoder import HubDecoder
from garden.registry import BACKBONES
from garden.text_family import TextFamily


@BACKBONES.register("mistral")
class MistralDecoder(HubDecoder):
    """Defaults are Mistral 7B v0.3's shape; a checkpoint's config.json gives its own. A sliding window
    bands the attention in the model's graph and in every cached step alike (the cache keeps every
    position; a window shorter than the text only hides the positions beyond its reach)."""

    family = "mistral"
    hub_backbone = keras_hub.models.MistralBackbone
    text_family = TextFamily(
        hub_tokenizer="MistralTokenizer",
        tokenizers=("sentencepiece",),
        vocabulary_file="tokenizer.model",
        hf_model_types=("mistral",),
        starts_with_token=True,
        stops_at_end_token=True,
    )
    hf_epsilon = "rms_norm_eps"
    weights_converter = "convert_llama3"

    def __init__(
        self,
        vocabulary_size=32768,
        num_layers=32,
        num_query_heads=32,
        hidden_dim=4096,
        intermediate_dim=14336,
        num_key_value_heads=8,
        rope_max_wavelength=1000000,
        rope_scaling_factor=1.0,
        layer_norm_epsilon=1e-5,
        sliding_window=None,
        head_dim=None,
        dropout=0.0,
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)

    def cache_heads(self):
        return self.num_key_value_heads, self.head_dim or self.hidden_dim // self.num_query_heads

    def embed(self, hub, token_ids, padding_mask, start):
        return hub.token_embedding(token_ids)
