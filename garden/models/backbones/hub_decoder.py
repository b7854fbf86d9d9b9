"""Base of the pretrained decoder families (gpt2.py, gemma.py, llama.py): a KerasHub decoder backbone
run by Garden, so that `causal_lm`, the sampler, the exporters and `garden serve` treat it as they
treat Garden's own `decoder`.

Garden runs KerasHub's layers with its own key/value cache rather than KerasHub's `call_with_cache`:
the cache tensor is the same ([batch, 2, length, key/value heads, head_dim] per layer; Gemma 3's layers
take it as a (keys, values) pair), but KerasHub's
generation right-pads a batch of prompts and has no padding mask in cached steps, while Garden
left-pads them and masks the padding in every step, so each prompt of a batch continues exactly as
it would alone and the whole loop runs in one graph (SavedModel `generate`, TFLite decode step).
"""

import inspect

import keras
from keras import ops

from garden.errors import GardenError
from garden.models import kv_cache
from garden.models.backbones.backbone import Backbone
from garden.models.output_logits import output_logits


class HubDecoder(Backbone):
    """Inputs `token_ids`, `padding_mask` [batch, length]; outputs `sequence_output` [batch, length,
    hidden_dim] and `token_logits` [batch, length, vocabulary] (float32), as Garden's `decoder`. The
    constructor arguments are the KerasHub backbone's own; `hub` is that backbone, whose weights
    (and layers) this model uses. A subclass names the KerasHub classes and says how tokens enter the
    first layer (`embed`) and how a layer takes a mask and a cache (`layer_kwargs`)."""

    family = ""
    hub_backbone: type = keras.Model
    text_inputs = ("token_ids", "padding_mask")
    hf_epsilon = ""  # the config.json key of the norms' epsilon, which KerasHub's converters leave at a default
    fixed_hub_arguments: dict = {}  # KerasHub constructor arguments that Garden's backbone does not vary
    weights_converter = ""  # a KerasHub converter module that ports Hugging Face weights in place of the family's

    def __init__(self, dtype=None, **kwargs):
        hub = self.hub_backbone(**self.constructor_arguments(), **self.fixed_hub_arguments, dtype=dtype, name="hub")
        inputs = self.text_input_layers()
        sequence, logits = self._run(hub, inputs["token_ids"], inputs["padding_mask"])
        super().__init__(
            inputs=inputs, outputs={"sequence_output": sequence, "token_logits": logits}, dtype=dtype, **kwargs
        )
        self.hub = hub

    @classmethod
    def hf_params(cls, config: dict) -> dict:
        """The constructor arguments of a Hugging Face `config.json`, by KerasHub's converter."""
        from keras_hub.src.utils.transformers import preset_loader

        params = cls.text_decoder_params(
            preset_loader.TransformersPresetLoader("", config).converter.convert_backbone_config(config)
        )
        if cls.hf_epsilon in config:
            params["layer_norm_epsilon"] = config[cls.hf_epsilon]
        unknown = sorted(set(params) - set(inspect.signature(cls.__init__).parameters))
        if unknown:
            raise GardenError(
                f"Garden's {cls.family} backbone has no parameter {unknown[0]}, which this checkpoint sets"
            )
        return params

    @classmethod
    def text_decoder_params(cls, params: dict) -> dict:
        """KerasHub's converted arguments without those of variants Garden does not run (refused)."""
        return params

    def cache_heads(self) -> tuple[int, int]:
        """(key/value heads, head_dim) of each layer's cache."""
        raise NotImplementedError

    def embed(self, hub, token_ids, padding_mask, start):
        """The first layer's input for `token_ids` at positions start.. of rows masked by `padding_mask`."""
        raise NotImplementedError

    def layer_kwargs(self, padding_mask, cache=None, cache_index=0) -> dict:
        """A transformer layer's keyword arguments for this padding mask and (optional) layer cache, as
        KerasHub's `TransformerDecoder` and its kin (GPT-2, Llama) name them."""
        if cache is None:
            return {"decoder_padding_mask": padding_mask}
        return {
            "decoder_padding_mask": padding_mask,
            "self_attention_cache": cache,
            "self_attention_cache_update_index": cache_index,
        }

    def _run(self, hub, token_ids, padding_mask, cache=None, cache_index=0):
        """(sequence_output, logits) of `token_ids` through `hub`'s layers; with a `cache` (either form
        of garden/models/kv_cache.py), also the updated cache, and the logits computed as
        garden/models/output_logits.py does."""
        x = self.embed(hub, token_ids, padding_mask, cache_index)
        layers = []
        caches = [None] * hub.num_layers if cache is None else kv_cache.layer_caches(cache, hub.num_layers)
        for layer, layer_cache in zip(hub.transformer_layers, caches):
            x = layer(x, **self.layer_kwargs(padding_mask, layer_cache, cache_index))
            if layer_cache is not None:
                x, layer_cache = x
                layers.append(ops.stack(layer_cache, axis=1) if isinstance(layer_cache, tuple) else layer_cache)
        sequence = hub.layer_norm(x)
        if cache is None:  # the model's graph
            return sequence, ops.cast(hub.token_embedding(sequence, reverse=True), "float32")
        logits = ops.cast(output_logits(hub.token_embedding, sequence), "float32")
        return sequence, logits, kv_cache.same_form(cache, layers)

    def cache_length(self, prompt_length, new_tokens):
        return prompt_length + new_tokens

    def empty_cache(self, batch_size, length):
        """Zeros [layers, batch, 2, length, key/value heads, head_dim] in the compute dtype."""
        return ops.zeros((self.hub.num_layers, batch_size, 2, length, *self.cache_heads()), self.compute_dtype)

    def decode(self, token_ids, padding_mask, cache, cache_index):
        """Logits [batch, chunk, vocabulary] of `token_ids` at positions cache_index.., attending to the
        cache and causally to each other; returns (logits, the updated cache, in the form it was given:
        garden/models/kv_cache.py). `padding_mask` [batch, cache length] marks the positions that hold tokens."""
        _, logits, cache = self._run(self.hub, token_ids, padding_mask, cache, cache_index)
        return logits, cache
