"""Base of the text tasks: the tokenizer the backbone resolves to, segment packing inside tf.data,
and Hugging Face checkpoint initialization."""

import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text

from garden.data.tokenizers import build_tokenizer, serving_tokenizer, tokenizer_file
from garden.models import hf_import
from garden.models.pretrained import checkpoint_dir
from garden.registry import BACKBONES
from garden.tasks.task import Task


class TextTask(Task):
    """Packs one or two segments as `[CLS] a [SEP] (b [SEP])` with segment ids 0 and 1. `truncate`
    is KerasHub's packer rule: `round_robin` shares the length, `waterfall` keeps the first
    segment whole (a question before its context)."""

    truncate = "round_robin"
    TRIMMERS = {"round_robin": tf_text.RoundRobinTrimmer, "waterfall": tf_text.WaterfallTrimmer}

    def __init__(self, config):
        super().__init__(config)
        backbone, tokenizer = config.model.backbone.type, config.model.tokenizer
        self.tokenizer = build_tokenizer(backbone, tokenizer, config.init_checkpoint)
        self.vocabulary = tokenizer_file(backbone, tokenizer, config.init_checkpoint)
        self.special_tokens = BACKBONES.get(backbone).special_tokens
        self.pad_id, self.start_id, self.end_id = (self.special_id(role) for role in ("pad", "start", "end"))
        self.sequence_length = tokenizer.sequence_length
        self.input_names = BACKBONES.get(backbone).text_inputs
        self.packer = self.make_packer(self.start_id, self.end_id, self.pad_id)

    def special_id(self, role):
        """The id of the backbone's special token for `role` (start, end, pad, mask)."""
        return self.tokenizer.token_to_id(self.special_tokens[role])

    def make_packer(self, start, end, pad):
        return keras_hub.layers.MultiSegmentPacker(
            start_value=start,
            end_value=end,
            pad_value=pad,
            sequence_length=self.sequence_length,
            truncate=self.truncate,
        )

    def pack(self, *segments):
        """Model inputs for token-id segments (each ragged [batch, None])."""
        return self.named_inputs(*self.packer(segments))

    def pack_in_serving(self, *segments):
        """`pack` in ops that TFLite runs (builtins and tensorflow-text's custom ops; KerasHub's packer
        needs RaggedGather, which neither provides): the same model inputs."""
        length = self.sequence_length
        trimmed = self.TRIMMERS[self.truncate](length - len(segments) - 1).trim(list(segments))
        positions = tf.range(length)[None, :]
        blank = tf.zeros([segments[0].nrows(out_type=tf.int32), length], tf.int32)
        token_ids = tf.where(positions == 0, self.start_id, blank + self.pad_id)
        segment_ids = blank
        start = blank[:, :1] + 1
        for index, segment in enumerate(trimmed):
            pieces = segment.to_tensor(default_value=self.pad_id, shape=[None, length])
            end = start + tf.cast(segment.row_lengths(), tf.int32)[:, None]
            inside = (positions >= start) & (positions < end)
            token_ids = tf.where(inside, tf.gather(pieces, tf.maximum(positions - start, 0), batch_dims=1), token_ids)
            token_ids = tf.where(positions == end, self.end_id, token_ids)
            segment_ids = tf.where(inside | (positions == end), index, segment_ids)
            start = end + 1
        return self.named_inputs(token_ids, segment_ids)

    def named_inputs(self, token_ids, segment_ids):
        inputs = {
            "token_ids": token_ids,
            "segment_ids": segment_ids,
            "padding_mask": tf.cast(token_ids != self.pad_id, tf.int32),
        }
        return {name: inputs[name] for name in self.input_names}

    def serving_segments(self, texts):
        """Token-id segments [batch, None] of string tensors, by the tokenizer that serving graphs carry."""
        tokenizer = serving_tokenizer(self.tokenizer)
        return [tokenizer.tokenize(text) for text in texts]

    def word_pieces(self, texts):
        """Whitespace words of `texts` [batch] split into word pieces: ragged [batch, words, pieces]."""
        words = tf.strings.split(texts)
        return words.with_flat_values(self.tokenizer(words.flat_values))

    def assets(self):
        return {**super().assets(), "model.tokenizer.vocabulary": self.vocabulary}

    def initialize(self, model):
        if self.config.init_checkpoint:
            hf_import.load_into(model.get_layer("backbone"), checkpoint_dir(self.config.init_checkpoint))
