"""Batch norms that train on TensorFlow's fused kernel.

Keras 3 trains `BatchNormalization` as separate ops (moments, then the normalization), where
tf_keras ran `FusedBatchNormV3`, one kernel forward and one backward; that alone made a ResNet-50
training step 12-16% slower on CPUs (docs/benchmarks.md). `fuse_batch_norms` makes the training
call of each eligible batch norm of a model run the fused kernel with the same variables and the
same arithmetic: the normalization uses the batch's biased variance, the moving statistics move as
Keras moves them. Inference (and so every export) keeps Keras's own call, as do layers the fused
kernel cannot run: renormalization, a mask, an axis other than the last of 4-D inputs, and, where a
GPU is visible, an epsilon under cuDNN's minimum (KerasHub's ResNets use 1e-5, which TensorFlow's
CPU kernel takes as it is). Synchronized batch norms (Garden's `resnet`) keep Keras's call too: the
fused kernel sees one replica's batch, and a run on one device would otherwise step differently
from the same run mirrored."""

import types

import keras
import tensorflow as tf
from keras import ops

_CUDNN_MIN_EPSILON = 1.001e-5  # tf.nn.fused_batch_norm raises a smaller epsilon to this for cuDNN


def fuse_batch_norms(model: keras.Model) -> None:
    """Makes the batch norms inside `model` train on the fused kernel where they can."""
    min_epsilon = _CUDNN_MIN_EPSILON if tf.config.list_logical_devices("GPU") else 0.0
    for layer in model._flatten_layers(include_self=False):
        if (
            isinstance(layer, keras.layers.BatchNormalization)
            and not (layer.renorm or layer.synchronized)
            and layer.epsilon >= min_epsilon
        ):
            layer.call = types.MethodType(_fused_call, layer)


def _fused_call(layer, inputs, training=None, mask=None):
    if not (training and layer.trainable) or mask is not None or not _fusable(layer, inputs):
        return keras.layers.BatchNormalization.call(layer, inputs, training=training, mask=mask)
    if inputs.dtype not in (tf.float16, tf.bfloat16):  # which the kernel reads, computing in float32
        inputs = ops.cast(inputs, "float32")
    channels = inputs.shape[-1]
    gamma = layer.gamma if layer.scale else tf.ones([channels])
    beta = layer.beta if layer.center else tf.zeros([channels])
    empty = tf.constant([], "float32")  # no running statistics go in when training
    outputs, mean, unbiased_variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=inputs,
        scale=tf.cast(gamma, "float32"),
        offset=tf.cast(beta, "float32"),
        mean=empty,
        variance=empty,
        epsilon=layer.epsilon,
        data_format="NHWC",
        is_training=True,
    )
    count = tf.cast(tf.size(inputs, out_type=tf.int64) // channels, "float32")
    variance = unbiased_variance * (count - 1.0) / count  # the kernel returns n/(n-1) x the batch's
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    return ops.cast(outputs, layer.compute_dtype)


def _fusable(layer, inputs) -> bool:
    return len(inputs.shape) == 4 and layer.axis in (3, -1)
