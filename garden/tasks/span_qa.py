"""Extractive question answering (SQuAD): `[CLS] question [SEP] context [SEP]`, the answer a span of
the context. Answers come as word spans of the whitespace-split context and are mapped to token
positions inside tf.data; an answer cut off by `sequence_length` points at [CLS] (position 0)."""

import tensorflow as tf

from garden import metrics
from garden.registry import TASKS
from garden.tasks.text import TextTask


@TASKS.register("span_qa")
class SpanQATask(TextTask):
    """Features `question`, `context` [batch]; labels [batch, 2]: the answer's first and last word."""

    truncate = "waterfall"

    def prepare(self, features, labels):
        question = self.tokenizer(features["question"])
        pieces = self.word_pieces(features["context"])
        per_word = pieces.values.row_lengths()
        first_word = pieces.row_starts()
        starts = tf.cumsum(per_word, exclusive=True)  # of each word's pieces, counted across the batch
        labels = tf.cast(labels, tf.int64)
        word_start = tf.gather(starts, first_word + labels[:, 0]) - tf.gather(starts, first_word)
        word_end = tf.gather(starts, first_word + labels[:, 1]) - tf.gather(starts, first_word)
        word_end += tf.gather(per_word, first_word + labels[:, 1]) - 1
        room = self.sequence_length - 3
        question_length = tf.minimum(question.row_lengths(), room)
        context_length = tf.minimum(pieces.merge_dims(1, 2).row_lengths(), room - question_length)
        offset = question_length + 2  # [CLS] question [SEP]
        inside = word_end < context_length
        spans = tf.stack([tf.where(inside, word_start + offset, 0), tf.where(inside, word_end + offset, 0)], axis=-1)
        return self.pack(question, pieces.merge_dims(1, 2)), spans

    def metrics(self, labels, outputs):
        return metrics.span_metrics(labels, outputs["logits"])
