"""Base of the text tasks: the tokenizer the backbone resolves to, segment packing inside tf.data,
and Hugging Face checkpoint initialization."""

import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text

from garden.data.tokenizers import (
    build_tokenizer,
    serving_tokenizer,
    special_id,
    tokenizer_family,
    tokenizer_files,
)
from garden.errors import GardenError
from garden.registry import BACKBONES
from garden.tasks.task import Task
from garden.tasks.warm_start import load_backbone
from garden.text_family import text_family


class TextTask(Task):
    """Packs one or two segments as `[CLS] a [SEP] (b [SEP])` with segment ids 0 and 1, in the
    backbone's special tokens, with as many end tokens between the segments as its family puts there
    (RoBERTa: `<s> a </s></s> b </s>`); a backbone that `packs_special_tokens = False` reads the word
    pieces alone (model2vec's static embeddings). `truncate` is KerasHub's packer rule: `round_robin` shares
    the length, `waterfall` keeps the first segment whole (a question before its context)."""

    truncate = "round_robin"
    TRIMMERS = {"round_robin": tf_text.RoundRobinTrimmer, "waterfall": tf_text.WaterfallTrimmer}

    def __init__(self, config):
        super().__init__(config)
        backbone, tokenizer = config.model.backbone.type, config.model.tokenizer
        if tokenizer.chat_template:
            raise GardenError(
                "task.model.tokenizer.chat_template is read by a causal_lm run's 'garden generate --chat'; leave it "
                f"empty for a {config.type} task"
            )
        self.family, folder = tokenizer_family(config.model.backbone)
        self.tokenizer = build_tokenizer(self.family, tokenizer, folder or config.init_checkpoint)
        self.tokenizer_files = tokenizer_files(self.family, tokenizer, folder or config.init_checkpoint)
        params = config.model.backbone.params.as_dict()
        BACKBONES.get(backbone).check_vocabulary(params, self.tokenizer.vocabulary_size())
        family = text_family(backbone)
        self.separator_tokens, self.packs_special_tokens = family.separator_tokens, family.packs_special_tokens
        self.pad_id, self.start_id, self.end_id = (self.special_id(role) for role in ("pad", "start", "end"))
        self.sequence_length = tokenizer.sequence_length
        self.input_names = BACKBONES.get(backbone).text_inputs
        self.packer = self.make_packer(self.start_id, self.end_id, self.pad_id)

    def special_id(self, role):
        """The id of the special token for `role` (start, end, pad, mask) of the tokenizer's family."""
        return special_id(self.tokenizer, self.family, role)

    def make_packer(self, start, end, pad):
        return keras_hub.layers.MultiSegmentPacker(
            start_value=start,
            end_value=end,
            sep_value=[end] * self.separator_tokens,
            pad_value=pad,
            sequence_length=self.sequence_length,
            truncate=self.truncate,
        )

    def pack(self, *segments):
        """Model inputs for token-id segments (each ragged [batch, None])."""
        if not self.packs_special_tokens:  # the word pieces alone (static embeddings, as model2vec)
            return self.pack_in_serving(*segments)
        return self.named_inputs(*self.packer(segments))

    def pack_in_serving(self, *segments):
        """`pack` in ops that TFLite runs (builtins and tensorflow-text's custom ops; KerasHub's packer
        needs RaggedGather, which neither provides): the same model inputs."""
        length, special = self.sequence_length, self.packs_special_tokens
        separators = self.separator_tokens if special else 0
        room = length - (2 + separators * (len(segments) - 1) if special else 0)
        trimmed = self.TRIMMERS[self.truncate](room).trim(list(segments))
        positions = tf.range(length)[None, :]
        blank = tf.zeros([segments[0].nrows(out_type=tf.int32), length], tf.int32)
        token_ids = tf.where((positions == 0) & special, self.start_id, blank + self.pad_id)
        segment_ids = blank
        start = blank[:, :1] + int(special)
        for index, segment in enumerate(trimmed):
            pieces = segment.to_tensor(default_value=self.pad_id, shape=[None, length])
            end = start + tf.cast(segment.row_lengths(), tf.int32)[:, None]
            inside = (positions >= start) & (positions < end)
            ends = int(special) if index == len(trimmed) - 1 else separators  # the last segment closes with one
            closing = (positions >= end) & (positions < end + ends)
            token_ids = tf.where(inside, tf.gather(pieces, tf.maximum(positions - start, 0), batch_dims=1), token_ids)
            token_ids = tf.where(closing, self.end_id, token_ids)
            segment_ids = tf.where(inside | closing, index, segment_ids)
            start = end + ends
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
        tokenize = serving_tokenizer(self.tokenizer)
        return [tokenize(text) for text in texts]

    def word_pieces(self, texts):
        """Whitespace words of `texts` [batch] split into word pieces: ragged [batch, words, pieces]."""
        words = tf.strings.split(texts)
        return words.with_flat_values(self.tokenizer(words.flat_values))

    def assets(self):
        return {**super().assets(), **{f"model.tokenizer.{key}": path for key, path in self.tokenizer_files.items()}}

    def initialize(self, model):
        if self.config.init_checkpoint:
            return load_backbone(model.get_layer("backbone"), self.init_checkpoint_path())
        return None
