"""Next-token sampling: greedy, temperature, top-k and top-p (nucleus), reproducible by seed."""

import dataclasses

import tensorflow as tf

from garden.errors import GardenError


@dataclasses.dataclass(frozen=True)
class Sampling:
    """`temperature` 0 is greedy; `top_k` 0 and `top_p` 1 leave the distribution whole."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise GardenError(f"sampling needs temperature >= 0, top_k >= 0 and 0 < top_p <= 1 (got {self})")


def sample(logits, seed, sampling):
    """Token ids [batch] (int32) for `logits` [batch, vocabulary]; `seed` is a stateless seed of two
    integers, so the same seed and logits give the same tokens."""
    logits = tf.cast(logits, tf.float32)
    if sampling.temperature == 0:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    logits = logits / sampling.temperature
    if sampling.top_k:
        kth = tf.math.top_k(logits, k=min(sampling.top_k, logits.shape[-1])).values[:, -1:]
        logits = tf.where(logits < kth, float("-inf"), logits)
    if sampling.top_p < 1:
        ranked = tf.sort(logits, direction="DESCENDING")
        before = tf.math.cumsum(tf.nn.softmax(ranked), axis=-1, exclusive=True)  # mass ranked above each token
        cutoff = tf.reduce_min(tf.where(before < sampling.top_p, ranked, float("inf")), axis=-1, keepdims=True)
        logits = tf.where(logits < cutoff, float("-inf"), logits)  # the fewest top tokens holding top_p
    return tf.random.stateless_categorical(logits, 1, seed, dtype=tf.int32)[:, 0]
