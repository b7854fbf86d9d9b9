"""A small ResNet for images (He et al., 2016), sized for MNIST-like inputs."""

import keras

from garden.models.backbones.backbone import Backbone
from garden.registry import BACKBONES


def _conv_bn(x, filters, strides, name, dtype, momentum, relu=True, kernel_size=3):
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv", dtype=dtype
    )(x)
    x = keras.layers.BatchNormalization(momentum=momentum, synchronized=True, name=f"{name}_bn", dtype=dtype)(x)
    return keras.layers.ReLU(name=f"{name}_relu", dtype=dtype)(x) if relu else x


def _residual_block(x, filters, strides, name, dtype, momentum):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, strides, f"{name}_proj", dtype, momentum, relu=False, kernel_size=1)
    x = _conv_bn(x, filters, strides, f"{name}_a", dtype, momentum)
    x = _conv_bn(x, filters, 1, f"{name}_b", dtype, momentum, relu=False)
    x = keras.layers.Add(name=f"{name}_add", dtype=dtype)([x, shortcut])
    return keras.layers.ReLU(name=f"{name}_out", dtype=dtype)(x)


@BACKBONES.register("resnet")
class ResNetBackbone(Backbone):
    """Stem convolution, stages of residual blocks (each later stage halves the resolution), global pooling.

    Input `image` [batch, height, width, channels]; output `pooled_output` [batch, stage_widths[-1]].
    """

    def __init__(
        self,
        image_shape=(28, 28, 1),
        stem_width=32,
        stem_strides=1,
        stage_widths=(32, 64, 128),
        blocks_per_stage=1,
        batch_norm_momentum=0.9,
        dtype=None,
        **kwargs,
    ):
        image = keras.Input(shape=tuple(image_shape), name="image")
        x = _conv_bn(image, stem_width, stem_strides, "stem", dtype, batch_norm_momentum)
        for stage, width in enumerate(stage_widths):
            for block in range(blocks_per_stage):
                strides = 2 if stage > 0 and block == 0 else 1
                x = _residual_block(x, width, strides, f"stage{stage}_block{block}", dtype, batch_norm_momentum)
        features = keras.layers.GlobalAveragePooling2D(name="pool", dtype=dtype)(x)
        super().__init__(inputs={"image": image}, outputs={"pooled_output": features}, dtype=dtype, **kwargs)
        self.keep_arguments(image_shape=tuple(image_shape), stage_widths=tuple(stage_widths))
