"""Gemma 3's text decoder (KerasHub's `Gemma3Backbone` without a vision encoder): Gemma 2's layers
with query and key RMSNorm, and local (sliding-window) and global attention layers of their own
rotary scales; a SentencePiece vocabulary (`tokenizer.model`). Hugging Face's `gemma3_text`
folders (Gemma 3 1B's kind) load; the image-text models and the embedding variant are refused."""

import dataclasses

import keras_hub

from garden.errors import GardenError
from garden.models.backbones.gemma import GemmaDecoder
from garden.registry import BACKBONES

# the arguments of Gemma3Backbone's image-text and embedding variants, as its text decoder has them
# (KerasHub's converter gives them)
TEXT_ONLY = dict(
    image_size=None,
    vision_encoder=None,
    use_bidirectional_attention=False,
    is_embedding_model=False,
    pooling_intermediate_dim=None,
    embedding_dim=None,
)


@BACKBONES.register("gemma3")
class Gemma3Decoder(GemmaDecoder):
    """Defaults are Gemma 3 1B's shape; a checkpoint's config.json gives its own. Gemma's embedding,
    cache and layer arguments; its own KerasHub classes and constructor arguments (those of this
    signature: see Backbone)."""

    family = "gemma3"
    hub_backbone = keras_hub.models.Gemma3Backbone
    text_family = dataclasses.replace(
        GemmaDecoder.text_family,
        hub_tokenizer="Gemma3Tokenizer",
        hub_tokenizer_arguments={"has_vision_tokens": False},  # text only: no image placeholder pieces
        hf_model_types=("gemma3_text",),
    )
    fixed_hub_arguments = {"image_size": None}

    def __init__(
        self,
        vocabulary_size=262144,
        num_layers=26,
        num_query_heads=4,
        num_key_value_heads=1,
        hidden_dim=1152,
        intermediate_dim=6912,
        head_dim=256,
        query_head_dim_normalize=True,
        use_query_key_norm=True,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        attention_logit_soft_cap=None,
        final_logit_soft_cap=None,
        use_sliding_window_attention=True,
        sliding_window_size=512,
        local_rope_scaling_factor=1.0,
        global_rope_scaling_factor=1.0,
        layer_norm_epsilon=1e-6,
        dropout=0.0,
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)

    def layer_kwargs(self, padding_mask, cache=None, cache_index=0):
        kwargs = super().layer_kwargs(padding_mask, cache, cache_index)
        if cache is not None:  # KerasHub 0.32's Gemma 3 layers take (and give back) keys and values apart
            kwargs["cache"] = (cache[:, 0], cache[:, 1])
        return kwargs

    @classmethod
    def text_decoder_params(cls, params: dict) -> dict:
        if any(params.pop(name, value) != value for name, value in TEXT_ONLY.items()):
            raise GardenError(
                "Garden runs Gemma 3's text decoder (Hugging Face's gemma3_text); this checkpoint is an image-text "
                "or embedding model"
            )
        return params
