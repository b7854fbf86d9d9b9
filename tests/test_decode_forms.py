"""The decode step's two speed-ups compute the same function: the per-layer cache gives the stacked
cache's logits and cache, and the einsum logits are the tied embedding's own reverse call."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.models import kv_cache
from garden.models.output_logits import output_logits
from garden.registry import BACKBONES


@pytest.mark.parametrize("soft_cap", [None, 3.0])
def test_output_logits_are_the_reversible_embeddings_for_one_row_and_many(soft_cap):
    embedding = keras.layers.ReversibleEmbedding(50, 8, logit_soft_cap=soft_cap)
    embedding.build((None, None))
    rng = np.random.default_rng(0)
    dynamic = tf.function(lambda x: output_logits(embedding, x), input_signature=[tf.TensorSpec([None, None, 8])])
    for shape in [(1, 1, 8), (3, 1, 8), (2, 5, 8)]:
        x = tf.constant(rng.normal(size=shape), tf.float32)
        expected = embedding(x, reverse=True).numpy()
        np.testing.assert_allclose(output_logits(embedding, x), expected, rtol=1e-5, atol=1e-6)  # shape known
        np.testing.assert_allclose(dynamic(x), expected, rtol=1e-5, atol=1e-6)  # decided in the graph
    untied = keras.layers.ReversibleEmbedding(50, 8, tie_weights=False)
    untied.build((None, None))
    x = tf.constant(rng.normal(size=(3, 1, 8)), tf.float32)
    np.testing.assert_array_equal(output_logits(untied, x), untied(x, reverse=True))


@pytest.mark.parametrize(
    "family, sizes",
    [
        ("decoder", dict(vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32)),
        ("gpt2", dict(vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32)),
    ],
)
def test_a_per_layer_cache_decodes_as_the_stacked_one(family, sizes):
    """Both cache forms give, step by step, the logits of one full forward pass over the 8 tokens
    (the reference: no cache at all), so a cache that both forms got wrong would fail too."""
    backbone = BACKBONES.get(family)(**sizes, dropout=0.0)
    rng = np.random.default_rng(1)
    token_ids = tf.constant(rng.integers(1, 40, (3, 8)), tf.int32)
    mask = tf.ones([3, 8], tf.int32)
    full = backbone({"token_ids": token_ids, "padding_mask": mask})["token_logits"].numpy()
    stacked = backbone.empty_cache(3, 8)
    layers = kv_cache.empty_layers(backbone, 3, 5, 3)
    assert isinstance(layers, tuple) and len(layers) == 2
    for start, end in ((0, 5), (5, 6), (6, 7), (7, 8)):  # the prompt, then three single tokens
        tokens = token_ids[:, start:end]
        logits, stacked = backbone.decode(tokens, mask, stacked, start)
        per_layer_logits, layers = backbone.decode(tokens, mask, layers, start)
        assert isinstance(layers, tuple) and not isinstance(stacked, tuple)
        np.testing.assert_allclose(logits, full[:, start:end], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(per_layer_logits, full[:, start:end], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(np.stack([c.numpy() for c in layers]), stacked.numpy())
    rows = tf.constant([2, 0])
    taken = kv_cache.take_rows(layers, rows)
    np.testing.assert_array_equal(np.stack([c.numpy() for c in taken]), kv_cache.take_rows(stacked, rows).numpy())
