"""Base of the text tasks: the tokenizer the backbone resolves to, segment packing inside tf.data,
and Hugging Face checkpoint initialization."""

import keras_hub
import tensorflow as tf

from garden.data.tokenizers import build_tokenizer
from garden.models import hf_import
from garden.models.pretrained import checkpoint_dir
from garden.registry import BACKBONES
from garden.tasks.task import Task


class TextTask(Task):
    """Packs one or two segments as `[CLS] a [SEP] (b [SEP])` with segment ids 0 and 1. `truncate`
    is KerasHub's packer rule: `round_robin` shares the length, `waterfall` keeps the first
    segment whole (a question before its context)."""

    truncate = "round_robin"

    def __init__(self, config):
        super().__init__(config)
        self.tokenizer = build_tokenizer(config.model.backbone.type, config.model.tokenizer, config.init_checkpoint)
        self.pad_id = self.tokenizer.token_to_id("[PAD]")
        self.sequence_length = config.model.tokenizer.sequence_length
        self.input_names = BACKBONES.get(config.model.backbone.type).text_inputs
        self.packer = self.make_packer(self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]"), self.pad_id)

    def make_packer(self, start, end, pad):
        return keras_hub.layers.MultiSegmentPacker(
            start_value=start, end_value=end, pad_value=pad, sequence_length=self.sequence_length, truncate=self.truncate
        )

    def pack(self, *segments):
        """Model inputs for token-id segments (each ragged [batch, None])."""
        token_ids, segment_ids = self.packer(segments)
        inputs = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": tf.cast(token_ids != self.pad_id, tf.int32)}
        return {name: inputs[name] for name in self.input_names}

    def word_pieces(self, texts):
        """Whitespace words of `texts` [batch] split into word pieces: ragged [batch, words, pieces]."""
        words = tf.strings.split(texts)
        return words.with_flat_values(self.tokenizer(words.flat_values))

    def initialize(self, model):
        if self.config.init_checkpoint:
            hf_import.load_into(model.get_layer("backbone"), checkpoint_dir(self.config.init_checkpoint))
