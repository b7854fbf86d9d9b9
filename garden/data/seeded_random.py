"""Stateless stand-ins for TensorFlow's stateful random ops, for augmentation code that calls
`tf.random.uniform` and its kin (Model Garden's `official.vision.ops.augment`).

Inside `seeded_random(seed)`, the functions `tf.random.uniform`, `normal`, `gamma` and `shuffle`
build stateless ops whose seeds are folded from `seed` and a counter, so a function traced in
the block (a tf.data map function) draws the same numbers for the same seed however often and
wherever it runs: what makes a resumed stream repeat its augmentations. Tracing is synchronous,
so the stand-ins are in place exactly while the function's ops are created.
"""

import contextlib
import itertools

import tensorflow as tf

_NAMES = ("uniform", "normal", "gamma", "shuffle")


@contextlib.contextmanager
def seeded_random(seed: tf.Tensor):
    """Within the block, `tf.random.{uniform, normal, gamma, shuffle}` draw statelessly from `seed` [2]."""
    counter = itertools.count()

    def next_seed():
        return tf.random.experimental.stateless_fold_in(seed, next(counter))

    def uniform(shape, minval=0, maxval=None, dtype=tf.float32, seed=None, name=None):
        return tf.random.stateless_uniform(shape, next_seed(), minval, maxval, dtype, name=name)

    def normal(shape, mean=0.0, stddev=1.0, dtype=tf.float32, seed=None, name=None):
        return tf.random.stateless_normal(shape, next_seed(), mean, stddev, dtype, name=name)

    def gamma(shape, alpha, beta=None, dtype=tf.float32, seed=None, name=None):
        return tf.random.stateless_gamma(shape, next_seed(), alpha, beta, dtype, name=name)

    def shuffle(value, seed=None, name=None):
        return tf.random.experimental.stateless_shuffle(value, next_seed(), name=name)

    stand_ins = {"uniform": uniform, "normal": normal, "gamma": gamma, "shuffle": shuffle}
    originals = {name: getattr(tf.random, name) for name in _NAMES}
    for name in _NAMES:
        setattr(tf.random, name, stand_ins[name])
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(tf.random, name, original)
