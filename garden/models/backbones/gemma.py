"""Gemma 1 and 2 (KerasHub's `GemmaBackbone`): embeddings scaled by sqrt(width), rotary positions,
multi- or grouped-query attention, gated GeLU MLPs, and Gemma 2's logit soft caps, extra norms and
alternating sliding-window layers; a SentencePiece vocabulary (`tokenizer.model`)."""

import keras_hub
from keras import ops

from garden.models.backbones.hub_decoder import HubDecoder
from garden.registry import BACKBONES
from garden.text_family import TextFamily


@BACKBONES.register("gemma")
class GemmaDecoder(HubDecoder):
    """Defaults are Gemma 2B's shape; a checkpoint's config.json gives its own (Gemma 2's included)."""

    family = "gemma"
    hub_backbone = keras_hub.models.GemmaBackbone
    text_family = TextFamily(
        hub_tokenizer="GemmaTokenizer",
        tokenizers=("sentencepiece",),
        vocabulary_file="tokenizer.model",
        hf_model_types=("gemma", "gemma2"),
        starts_with_token=True,
        stops_at_end_token=True,
    )
    hf_epsilon = "rms_norm_eps"

    def __init__(
        self,
        vocabulary_size=256000,
        num_layers=18,
        num_query_heads=8,
        num_key_value_heads=1,
        hidden_dim=2048,
        intermediate_dim=32768,
        head_dim=256,
        query_head_dim_normalize=True,
        use_post_ffw_norm=False,
        use_post_attention_norm=False,
        attention_logit_soft_cap=None,
        final_logit_soft_cap=None,
        use_sliding_window_attention=False,
        sliding_window_size=4096,
        layer_norm_epsilon=1e-6,
        dropout=0.0,
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)

    def cache_heads(self):
        return self.num_key_value_heads, self.head_dim

    def embed(self, hub, token_ids, padding_mask, start):
        x = hub.token_embedding(token_ids)
        return x * ops.cast(ops.sqrt(hub.hidden_dim), x.dtype)

    def layer_kwargs(self, padding_mask, cache=None, cache_index=0):
        if cache is None:
            return {"padding_mask": padding_mask}
        return {"padding_mask": padding_mask, "cache": cache, "cache_update_index": cache_index}
