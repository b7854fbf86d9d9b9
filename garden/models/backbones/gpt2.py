"""GPT-2 (KerasHub's `GPT2Backbone`): learned absolute positions, pre-norm transformer layers and a
byte-level BPE vocabulary (`vocab.json` + `merges.txt`)."""

import keras_hub
from keras import ops

from garden.models.backbones.hub_decoder import HubDecoder
from garden.registry import BACKBONES
from garden.text_family import TextFamily


@BACKBONES.register("gpt2")
class GPT2Decoder(HubDecoder):
    """Defaults are GPT-2 small's (124M weights). A left-padded row's positions count its tokens
    only (Hugging Face's `position_ids` from the attention mask), so padding does not move them."""

    family = "gpt2"
    hub_backbone = keras_hub.models.GPT2Backbone
    text_family = TextFamily(
        hub_tokenizer="GPT2Tokenizer",
        tokenizers=("byte_bpe",),
        vocabulary_file="vocab.json",
        hf_model_types=("gpt2",),
        starts_with_token=True,
        stops_at_end_token=True,
    )

    def __init__(
        self,
        vocabulary_size=50257,
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
        intermediate_dim=3072,
        dropout=0.1,
        max_sequence_length=1024,
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)

    @property
    def max_positions(self) -> int:
        """The positions it has embeddings for: a prompt and its continuation fit in them."""
        return self.max_sequence_length

    def cache_heads(self):
        return self.num_heads, self.hidden_dim // self.num_heads

    def embed(self, hub, token_ids, padding_mask, start):
        tokens = hub.token_embedding(token_ids)
        counted = ops.maximum(ops.cumsum(padding_mask, axis=1) - 1, 0)  # [batch, mask length]
        length = ops.shape(token_ids)[1]  # None in the model's graph, where the mask is as long as the tokens
        if length is not None:  # a gather: XLA compiles a slice from `start` once per value of start
            counted = ops.take(counted, start + ops.arange(length), axis=1)
        positions = hub.position_embedding(tokens, positions=counted)
        return hub.embeddings_dropout(hub.embeddings_add((tokens, positions)))
