"""Causal language modeling: texts tokenized into one stream and cut into fixed-length windows,
next-token cross-entropy, and per-token loss, perplexity and bits on held-out texts."""

import keras
import numpy as np
import tensorflow as tf

from garden.data.examples import Examples
from garden.data.tokenizers import build_tokenizer, tokenizer_files, tokenizer_type, train_sentencepiece
from garden.errors import GardenError
from garden.registry import TASKS
from garden.tasks.task import Task
from garden.tasks.warm_start import load_backbone


@TASKS.register("causal_lm")
class CausalLMTask(Task):
    """An example is a window of `sequence_length` + 1 tokens: the model reads the first
    `sequence_length` and predicts each next one. Consecutive windows share one token, so every
    token of the stream after the first is predicted exactly once per epoch. `init_checkpoint` is a
    pretrained decoder's folder (gpt2, gemma, llama: Hugging Face's layout or a KerasHub preset),
    whose tokenizer files the run reads unless `model.tokenizer.vocabulary` names others."""

    def __init__(self, config):
        super().__init__(config)
        tokenizer, backbone = config.model.tokenizer, config.model.backbone
        vocabulary_size = getattr(backbone.params, "vocabulary_size", 0)
        trains_vocabulary = not (tokenizer.vocabulary or config.init_checkpoint)
        if tokenizer_type(backbone.type, tokenizer.type) == "sentencepiece" and trains_vocabulary:
            if not vocabulary_size:
                raise GardenError(
                    "set task.model.backbone.params.vocabulary_size: the number of SentencePiece pieces to train"
                )
            tokenizer = tokenizer.replace(
                vocabulary=train_sentencepiece(self.texts(config.train_data), vocabulary_size)
            )
        self.tokenizer = build_tokenizer(backbone.type, tokenizer, config.init_checkpoint)
        self.tokenizer_files = tokenizer_files(backbone.type, tokenizer, config.init_checkpoint, chat=True)
        if self.tokenizer.vocabulary_size() != vocabulary_size:
            raise GardenError(
                f"the tokenizer has {self.tokenizer.vocabulary_size()} ids; set "
                f"task.model.backbone.params.vocabulary_size={self.tokenizer.vocabulary_size()}"
            )
        self.sequence_length = tokenizer.sequence_length

    def assets(self):
        return {**super().assets(), **{f"model.tokenizer.{key}": path for key, path in self.tokenizer_files.items()}}

    def initialize(self, model):
        if self.config.init_checkpoint:
            return load_backbone(model.get_layer("backbone"), self.init_checkpoint_path())
        return None

    def texts(self, data_config):
        return super().load(data_config.replace(num_examples=-1)).features["text"]

    def token_stream(self, texts) -> np.ndarray:
        """`texts`' token ids end to end, each text tokenized by one traced graph, in parallel and in
        order (called eagerly, a byte-pair tokenizer runs its merge loop op by op: 32 s against 5 s
        for Shakespeare's training plays with GPT-2's tokenizer on 2 cores)."""
        ids = tf.data.Dataset.from_tensor_slices(texts).map(self.tokenizer, num_parallel_calls=tf.data.AUTOTUNE)
        return np.concatenate(
            [np.zeros(0, np.int32), *(np.reshape(t, -1).astype(np.int32) for t in ids.as_numpy_iterator())]
        )

    def load(self, data_config, label_names=None):
        stream = self.token_stream(self.texts(data_config))
        length = self.sequence_length
        count = (len(stream) - 1) // length
        if count < 1:
            raise GardenError(
                f"{data_config.dataset} has {len(stream)} tokens, too few for one window of "
                f"task.model.tokenizer.sequence_length={length}; lower it"
            )
        windows = stream[np.arange(count)[:, None] * length + np.arange(length + 1)].astype(np.int32)
        return Examples({"token_ids": windows}, np.zeros(count, np.int64), []).take(data_config.num_examples)

    def prepare(self, features, labels):
        window = features["token_ids"]
        inputs = window[:, :-1]
        return {"token_ids": inputs, "padding_mask": tf.ones_like(inputs)}, window[:, 1:]

    def eval_outputs(self, outputs, labels):
        losses = keras.losses.sparse_categorical_crossentropy(labels, outputs["logits"], from_logits=True)
        return {"loss_sum": tf.reduce_sum(tf.cast(losses, tf.float64), axis=-1)}

    def metrics(self, labels, outputs):
        loss = float(outputs["loss_sum"].sum() / labels.size)
        return {"loss": loss, "perplexity": float(np.exp(loss)), "bits_per_token": loss / np.log(2)}
