"""Masked language modelling (BERT pretraining) on any text dataset: KerasHub's MaskedLMMaskGenerator
selects 15% of the tokens inside tf.data (80% become [MASK], 10% a random token, 10% stay); the
labels are the original ids there and -1 elsewhere. The dataset's own labels are ignored."""

import keras_hub
import numpy as np
import tensorflow as tf

from garden.registry import TASKS
from garden.tasks.text import TextTask

MASK_RATE = 0.15


@TASKS.register("masked_lm")
class MaskedLMTask(TextTask):
    def __init__(self, config):
        super().__init__(config)
        special = [self.start_id, self.end_id, self.pad_id]
        self.masker = keras_hub.layers.MaskedLMMaskGenerator(
            vocabulary_size=self.tokenizer.vocabulary_size(),
            mask_selection_rate=MASK_RATE,
            mask_selection_length=int(np.ceil(MASK_RATE * self.sequence_length)),
            mask_token_id=self.special_id("mask"),
            unselectable_token_ids=special,
        )

    def prepare(self, features, labels):
        inputs = self.pack(self.tokenizer(features["text"]))
        masked = self.masker(inputs["token_ids"])
        chosen = tf.one_hot(masked["mask_positions"], self.sequence_length, dtype=tf.int32)
        chosen *= tf.cast(masked["mask_weights"], tf.int32)[..., None]  # [batch, selections, length]
        selected = tf.reduce_max(chosen, axis=1) > 0
        targets = tf.where(selected, inputs["token_ids"], -1)
        return {**inputs, "token_ids": masked["token_ids"]}, targets

    def eval_outputs(self, outputs, labels):
        """Per-token log-probability of the label and whether the argmax is right (not the logits,
        which are [examples, length, vocabulary])."""
        log_probs = tf.nn.log_softmax(outputs["logits"])
        label_log_prob = tf.gather(log_probs, tf.maximum(labels, 0), batch_dims=2)
        correct = tf.argmax(log_probs, axis=-1, output_type=labels.dtype) == labels
        return {"label_log_prob": label_log_prob, "correct": correct}

    def metrics(self, labels, outputs):
        scored = labels != -1
        loss = float(-np.mean(outputs["label_log_prob"][scored]))
        return {"accuracy": float(np.mean(outputs["correct"][scored])), "loss": loss, "perplexity": float(np.exp(loss))}
