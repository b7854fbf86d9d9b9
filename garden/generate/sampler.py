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

    def tensors(self):
        """(temperature, top_k, top_p) as the scalar tensors that `sample` and a generate signature take."""
        return tf.constant(self.temperature, tf.float32), tf.constant(self.top_k, tf.int32), tf.constant(self.top_p, tf.float32)


def sample(logits, seed, temperature, top_k, top_p):
    """Token ids [batch] (int32) for `logits` [batch, vocabulary]; `seed` is a stateless seed of two
    integers, so the same seed and logits give the same tokens. The rules are scalar tensors (see
    `Sampling`), so one traced graph serves every setting."""
    logits = tf.cast(logits, tf.float32)
    vocabulary = tf.shape(logits)[-1]
    scaled = logits / tf.maximum(temperature, 1e-6)
    ranked = tf.sort(scaled, direction="DESCENDING")
    kth = ranked[:, tf.minimum(tf.where(top_k > 0, top_k, vocabulary), vocabulary) - 1][:, None]
    scaled = tf.where(scaled < kth, float("-inf"), scaled)
    ranked = tf.sort(scaled, direction="DESCENDING")
    before = tf.math.cumsum(tf.nn.softmax(ranked), axis=-1, exclusive=True)  # mass ranked above each token
    cutoff = tf.reduce_min(tf.where(before < top_p, ranked, float("inf")), axis=-1, keepdims=True)
    scaled = tf.where(tf.logical_and(top_p < 1, scaled < cutoff), float("-inf"), scaled)  # the fewest top tokens holding top_p
    sampled = tf.random.stateless_categorical(scaled, 1, seed, dtype=tf.int32)[:, 0]
    return tf.where(temperature > 0, sampled, tf.argmax(logits, axis=-1, output_type=tf.int32))
