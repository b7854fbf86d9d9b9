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
        return (
            tf.constant(self.temperature, tf.float32),
            tf.constant(self.top_k, tf.int32),
            tf.constant(self.top_p, tf.float32),
        )


def sample(logits, seed, temperature, top_k, top_p):
    """Token ids [batch] (int32) for `logits` [batch, vocabulary]; `seed` is a stateless seed of two
    integers, so the same seed and logits give the same tokens. The rules are scalar tensors (see
    `Sampling`), so one traced graph serves every setting; greedy decoding and rules left off cost
    nothing (each is a `tf.cond`)."""
    logits = tf.cast(logits, tf.float32)
    return tf.cond(
        temperature > 0,
        lambda: _draw(logits, seed, temperature, top_k, top_p),
        lambda: tf.argmax(logits, axis=-1, output_type=tf.int32),
    )


def _draw(logits, seed, temperature, top_k, top_p):
    scaled = logits / temperature
    scaled = tf.cond(top_k > 0, lambda: _top_k(scaled, top_k), lambda: scaled)
    scaled = tf.cond(top_p < 1, lambda: _top_p(scaled, top_p), lambda: scaled)
    return tf.random.stateless_categorical(scaled, 1, seed, dtype=tf.int32)[:, 0]


def _top_k(logits, k):
    kth = tf.math.top_k(logits, k=tf.minimum(k, tf.shape(logits)[-1])).values[:, -1:]
    return tf.where(logits < kth, float("-inf"), logits)


def _top_p(logits, p):
    """The fewest top tokens holding probability `p`."""
    ranked = tf.sort(logits, direction="DESCENDING")
    before = tf.math.cumsum(tf.nn.softmax(ranked), axis=-1, exclusive=True)  # mass ranked above each token
    cutoff = tf.reduce_min(tf.where(before < p, ranked, float("inf")), axis=-1, keepdims=True)
    return tf.where(logits < cutoff, float("-inf"), logits)
