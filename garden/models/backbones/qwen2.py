"""Qwen 2 and 2.5 (KerasHub's `QwenBackbone`): rotary positions, grouped-query attention with biases
on the query, key and value projections, RMSNorm, a SwiGLU MLP, tied embeddings in the small sizes,
and a byte-level BPE in Hugging Face's `tokenizer.json` (read with its added tokens, as KerasHub's
`QwenTokenizer` is). No start token; a continuation ends at `<|endoftext|>`."""

import keras_hub

from garden.errors import GardenError
from garden.models.backbones.hub_decoder import HubDecoder
from garden.registry import BACKBONES
from garden.text_family import TextFamily


@BACKBONES.register("qwen2")
class Qwen2Decoder(HubDecoder):
    """Defaults are Qwen2.5-0.5B's shape; a checkpoint's config.json gives its own."""

    family = "qwen2"
    hub_backbone = keras_hub.models.QwenBackbone
    text_family = TextFamily(
        hub_tokenizer="QwenTokenizer",
        tokenizers=("byte_bpe",),
        vocabulary_file="tokenizer.json",
        hf_model_types=("qwen2",),
        stops_at_end_token=True,
    )
    hf_epsilon = "rms_norm_eps"

    def __init__(
        self,
        vocabulary_size=151936,
        num_layers=24,
        num_query_heads=14,
        num_key_value_heads=2,
        hidden_dim=896,
        intermediate_dim=4864,
        rope_max_wavelength=1000000,
        rope_scaling_factor=1.0,
        layer_norm_epsilon=1e-6,
        dropout=0.0,
        tie_word_embeddings=True,
        use_sliding_window_attention=False,
        sliding_window_size=32768,
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)

    @classmethod
    def text_decoder_params(cls, params: dict) -> dict:
        # KerasHub 0.32's Qwen 2 converter names QwenBackbone's `use_sliding_window_attention` as the config
        # does (its Qwen 3 converter gives neither)
        if "use_sliding_window" in params:
            params["use_sliding_window_attention"] = bool(params.pop("use_sliding_window"))
        if params.get("use_sliding_window_attention"):
            raise GardenError(
                "this Qwen 2 checkpoint sets use_sliding_window; Garden's cache runs Qwen 2 with full attention "
                "only (as every released Qwen 2 and 2.5 checkpoint has it)"
            )
        return params

    def cache_heads(self):
        return self.num_key_value_heads, self.hidden_dim // self.num_query_heads

    def embed(self, hub, token_ids, padding_mask, start):
        return hub.token_embedding(token_ids)
