"""Token tagging (NER, POS): whitespace words with one tag each; the tag is predicted at each word's
first word piece. Word labels are aligned to pieces inside tf.data (-1 marks pieces not scored)."""

import tensorflow as tf

from garden import metrics
from garden.registry import TASKS
from garden.tasks.text import TextTask


@TASKS.register("token_tagging")
class TokenTaggingTask(TextTask):
    """Features `text` (words joined by spaces); labels [batch, words] tag ids, -1 past the last word."""

    def __init__(self, config):
        super().__init__(config)
        self.label_packer = self.make_packer(-1, -1, -1)

    def prepare(self, features, labels):
        pieces = self.word_pieces(features["text"])
        per_word = pieces.values.row_lengths()
        word_labels = tf.RaggedTensor.from_tensor(labels, lengths=pieces.row_lengths()).flat_values
        first_piece = tf.ragged.range(per_word).flat_values == 0
        piece_labels = tf.where(first_piece, tf.repeat(word_labels, per_word), tf.constant(-1, labels.dtype))
        tokens = pieces.merge_dims(1, 2)
        aligned, _ = self.label_packer(tokens.with_flat_values(piece_labels))
        return self.pack(tokens), aligned

    def metrics(self, labels, outputs):
        return metrics.tagging_metrics(labels, outputs["logits"])
