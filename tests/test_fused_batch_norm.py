"""Batch norms training on TensorFlow's fused kernel compute what Keras's own batch norm computes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.models.fused_batch_norm import fuse_batch_norms
from garden.models.task_model import build_backbone
from garden.resolve import experiment_config
from garden.train import precision


def conv_bn(**batch_norm):
    """A convolution and a batch norm with random (seeded) weights and moving statistics."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((9, 7, 5))
    features = keras.layers.Conv2D(6, 3)(inputs)
    normalized = keras.layers.BatchNormalization(
        momentum=0.9,
        beta_initializer="random_normal",
        gamma_initializer="random_normal",
        moving_mean_initializer="random_normal",
        moving_variance_initializer="ones",
        **batch_norm,
    )(features)
    return keras.Model(inputs, normalized)


def train_three_calls(model, images):
    """Outputs, gradients and moving statistics after three training calls of `model` in a tf.function."""

    @tf.function
    def call():
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            loss = tf.reduce_sum(tf.cast(outputs, "float32") * DIRECTION)
        return outputs, tape.gradient(loss, model.trainable_variables)

    for _ in range(3):
        outputs, gradients = call()
    graph_ops = {op.type for op in call.get_concrete_function().graph.get_operations()}
    return outputs, gradients, [v.numpy() for v in model.non_trainable_variables], graph_ops


IMAGES = np.random.default_rng(1).normal(1.0, 3.0, size=(4, 9, 7, 5)).astype(np.float32)
DIRECTION = np.random.default_rng(2).normal(size=(4, 7, 5, 6)).astype(np.float32)  # of the loss


@pytest.mark.parametrize(
    "options",
    [{"epsilon": 1e-5}, {"epsilon": 1e-3}, {"epsilon": 1e-3, "scale": False, "center": False}],
    ids=["keras_hub_epsilon", "keras_epsilon", "no_scale_no_center"],
)
def test_fused_training_matches_keras_outputs_gradients_and_moving_statistics(options):
    keras_model, fused_model = conv_bn(**options), conv_bn(**options)
    fuse_batch_norms(fused_model)
    expected, expected_gradients, expected_moving, keras_ops = train_three_calls(keras_model, IMAGES)
    outputs, gradients, moving, fused_ops = train_three_calls(fused_model, IMAGES)
    assert "FusedBatchNormV3" in fused_ops and "FusedBatchNormV3" not in keras_ops
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(gradients, expected_gradients, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)
    for ours, theirs in zip(moving, expected_moving, strict=True):  # biased batch variance, Keras's momentum
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fused_model(IMAGES, training=False), keras_model(IMAGES, training=False), atol=1e-6)
    eager = fused_model(IMAGES, training=True)  # outside a tf.function too
    np.testing.assert_allclose(eager, keras_model(IMAGES, training=True), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_fused_training_under_mixed_precision_matches_keras(dtype):
    precision.set_policy(dtype)
    try:
        keras_model, fused_model = conv_bn(), conv_bn()
        fuse_batch_norms(fused_model)
        expected, _, expected_moving, _ = train_three_calls(keras_model, IMAGES)
        outputs, _, moving, _ = train_three_calls(fused_model, IMAGES)
    finally:
        precision.set_policy("float32")
    assert outputs.dtype == expected.dtype == dtype
    np.testing.assert_allclose(tf.cast(outputs, "float32"), tf.cast(expected, "float32"), rtol=2e-2, atol=2e-2)
    for ours, theirs in zip(moving, expected_moving, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("option", ["renorm", "synchronized"])
def test_renormalized_and_synchronized_batch_norms_keep_keras_call(option):
    model = conv_bn(**{option: True})
    fuse_batch_norms(model)
    assert "FusedBatchNormV3" not in train_three_calls(model, IMAGES)[3]


def test_batch_norms_of_other_than_4d_inputs_keep_keras_call():
    sequences = IMAGES[:, 0]  # 3-D inputs: no fused kernel
    keras_layer, fused_layer = keras.layers.BatchNormalization(), keras.layers.BatchNormalization()
    fuse_batch_norms(keras.Sequential([keras.Input((7, 5)), fused_layer]))
    np.testing.assert_allclose(fused_layer(sequences, training=True), keras_layer(sequences, training=True), atol=1e-6)
    np.testing.assert_allclose(fused_layer.moving_variance, keras_layer.moving_variance, atol=1e-6)


def test_garden_backbones_train_their_batch_norms_fused():
    config = experiment_config(
        "image_classifier",
        sets=["task.model.backbone.type=resnet_v1", "task.model.backbone.params.image_shape=[32, 32, 3]"],
    )
    backbone = build_backbone(config.task.model)
    norms = [layer for layer in backbone._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.call.__func__.__name__ == "_fused_call" for layer in norms)
