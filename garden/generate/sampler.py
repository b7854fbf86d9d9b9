"""Next-token sampling, row by row: greedy, temperature, top-k, top-p (nucleus) and a repetition
penalty, each a tensor with one value per row (as gemma_pytorch samples), and each row's draws
fixed by its own seed, so a row samples the same tokens whatever else is in its batch."""

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from garden.errors import GardenError


@dataclasses.dataclass(frozen=True)
class Sampling:
    """`temperature` 0 is greedy; `top_k` 0, `top_p` 1 and `repetition_penalty` 1 leave the
    distribution whole. The penalty divides the positive logits (multiplies the negative ones) of
    the tokens already in the prompt or the continuation (CTRL's rule, as Hugging Face applies it)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def __post_init__(self):
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise GardenError(
                f"sampling needs temperature >= 0, top_k >= 0, 0 < top_p <= 1 and repetition_penalty > 0 (got {self})"
            )


PLAIN = Sampling()  # the softmax of the logits, whole


class Rules(NamedTuple):
    """The sampling of each row: tensors [rows]."""

    seed: tf.Tensor
    temperature: tf.Tensor
    top_k: tf.Tensor
    top_p: tf.Tensor
    repetition_penalty: tf.Tensor

    @classmethod
    def of_inputs(cls, inputs: dict) -> "Rules":
        """The rules in a `generate` signature's inputs (tensors or arrays [rows], by field name)."""
        return cls(**{name: tf.convert_to_tensor(inputs[name]) for name in cls._fields})

    @classmethod
    def of(cls, samplings: Sequence[Sampling], seeds: Sequence[int]) -> "Rules":
        """One row per (sampling, seed)."""
        return cls(
            tf.constant(seeds, tf.int32),
            tf.constant([s.temperature for s in samplings], tf.float32),
            tf.constant([s.top_k for s in samplings], tf.int32),
            tf.constant([s.top_p for s in samplings], tf.float32),
            tf.constant([s.repetition_penalty for s in samplings], tf.float32),
        )


def seen_tokens(token_ids, padding_mask, vocabulary):
    """[rows, vocabulary] booleans: which tokens each row's prompt holds (padding aside)."""
    rows = tf.shape(token_ids)[0]
    row_index = tf.broadcast_to(tf.range(rows)[:, None], tf.shape(token_ids))
    indices = tf.reshape(tf.stack([row_index, token_ids], axis=-1), [-1, 2])
    return tf.scatter_nd(indices, tf.reshape(padding_mask, [-1]), [rows, vocabulary]) > 0


def with_token(seen, token):
    """`seen` with each row's new `token` [rows] marked."""
    indices = tf.stack([tf.range(tf.shape(token)[0]), token], axis=1)
    return tf.tensor_scatter_nd_update(seen, indices, tf.ones_like(token, tf.bool))


def next_token(logits, seen, index, rules: Rules):
    """Token ids [rows] (int32) for `logits` [rows, vocabulary] at step `index`, under `rules`;
    `seen` marks the tokens the repetition penalty acts on. A row of temperature 0 takes the
    argmax of its penalized logits; the others draw from `shaped`'s softmax."""
    penalized = _penalized(tf.cast(logits, tf.float32), seen, rules.repetition_penalty)
    greedy = tf.argmax(penalized, axis=-1, output_type=tf.int32)
    sampled = rules.temperature > 0

    def draw():
        noisy = _shaped(penalized, rules) + _gumbel(rules.seed, index, tf.shape(logits)[-1])
        return tf.where(sampled, tf.argmax(noisy, axis=-1, output_type=tf.int32), greedy)

    return tf.cond(tf.reduce_any(sampled), draw, lambda: greedy)


traced_next_token = tf.function(next_token, reduce_retracing=True)  # for the loops run from Python


def shaped(logits, seen, rules: Rules):
    """The logits [rows, vocabulary] that a sampled row draws its next token from: penalized,
    divided by the temperature, then cut to the top k and to the top p. Rules no row uses cost
    nothing (each is a `tf.cond`)."""
    return _shaped(_penalized(tf.cast(logits, tf.float32), seen, rules.repetition_penalty), rules)


def _penalized(logits, seen, penalty):
    def penalize():
        per_row = penalty[:, None]
        return tf.where(seen, tf.where(logits > 0, logits / per_row, logits * per_row), logits)

    return tf.cond(tf.reduce_any(penalty != 1), penalize, lambda: logits)


def _shaped(logits, rules):
    scaled = logits / tf.where(rules.temperature > 0, rules.temperature, 1.0)[:, None]
    truncated = tf.reduce_any(rules.top_k > 0) | tf.reduce_any(rules.top_p < 1)
    return tf.cond(truncated, lambda: _truncated(scaled, rules.top_k, rules.top_p), lambda: scaled)


def _truncated(logits, top_k, top_p):
    """`logits` with -inf outside each row's `top_k` likeliest tokens and then outside the fewest of
    those holding probability `top_p` (renormalized over the top k, as Hugging Face's do)."""
    vocabulary = tf.shape(logits)[-1]
    ranked = tf.sort(logits, direction="DESCENDING")
    k = tf.where(top_k > 0, tf.minimum(top_k, vocabulary), vocabulary)
    in_top_k = tf.range(vocabulary)[None] < k[:, None]
    ranked = tf.where(in_top_k, ranked, float("-inf"))
    before = tf.math.cumsum(tf.nn.softmax(ranked), axis=-1, exclusive=True)  # mass ranked above each token
    kept = in_top_k & (before < top_p[:, None])
    cutoff = tf.reduce_min(tf.where(kept, ranked, float("inf")), axis=-1, keepdims=True)
    return tf.where(logits < cutoff, float("-inf"), logits)


def _gumbel(seeds, index, vocabulary):
    """Gumbel noise [rows, vocabulary], each row drawn from the stateless seed (its seed, `index`):
    the argmax of logits plus this noise is a draw from their softmax (the Gumbel-max trick)."""
    tiny = float(np.finfo(np.float32).tiny)

    def row(seed):
        return tf.random.stateless_uniform([vocabulary], tf.stack([seed, index]), minval=tiny, maxval=1.0)

    uniform = tf.map_fn(row, seeds, fn_output_signature=tf.float32)
    return -tf.math.log(-tf.math.log(uniform))
