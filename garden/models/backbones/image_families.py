"""Named KerasHub image backbones: ResNet v1/v2, MobileNetV3, EfficientNet (B0-B7, V2), ViT and CSPNet.

Each picks a variant's architecture arguments and builds `KerasHubImageBackbone` (keras_hub.py). The
tables are KerasHub's own where it keeps them (its timm converters, which match the published
weights); ViT's sizes and EfficientNet B6/B7's scaling are from their papers (Dosovitskiy et al.,
2021; Tan and Le, 2019). Every shortcut takes `image_shape`, `pooling` and `normalization` as the
generic `keras_hub.CLASS` type does."""

import importlib

from garden.errors import did_you_mean
from garden.models.backbones.keras_hub import KerasHubImageBackbone
from garden.registry import BACKBONES

RESNET_DEPTHS = (18, 26, 34, 50, 101, 152)
MOBILENET_V3_VARIANTS = ("small_050", "small_100", "large_100")
EFFICIENTNET_VARIANTS = ("b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "lite0", "v2_t", "v2_s", "v2_m")
_EFFICIENTNET_TIMM = {"v2_t": "rw_t", "v2_s": "rw_s", "v2_m": "rw_m"}  # timm's EfficientNetV2 (rw) variants
_EFFICIENTNET_SCALING = {"b6": (1.8, 2.6), "b7": (2.0, 3.1)}  # width, depth coefficients
VIT_SIZES = {  # layers, heads, width, MLP width
    "tiny": (12, 3, 192, 768),
    "small": (12, 6, 384, 1536),
    "base": (12, 12, 768, 3072),
    "large": (24, 16, 1024, 4096),
    "huge": (32, 16, 1280, 5120),
}
CSPNET_VARIANTS = ("darknet53", "resnet50", "resnext50")
KERAS_HUB_CLASSES = {  # each family's KerasHub backbone class, whose presets it starts from (`garden models`)
    "resnet_v1": "ResNetBackbone",
    "resnet_v2": "ResNetBackbone",
    "mobilenet_v3": "MobileNetBackbone",
    "efficientnet": "EfficientNetBackbone",
    "vit": "ViTBackbone",
    "cspnet": "CSPNetBackbone",
}


def _choice(value, choices, what):
    if value not in choices:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(map(str, choices))}{did_you_mean(value, choices)}")


def _timm_arguments(converter, architecture):
    """KerasHub's architecture arguments for timm's `architecture` name."""
    module = importlib.import_module(f"keras_hub.src.utils.timm.convert_{converter}")
    return module.convert_backbone_config({"architecture": architecture})


def _resnet(depth, pre_activation, image_shape, pooling, normalization, dtype, name):
    _choice(depth, RESNET_DEPTHS, "depth")
    arguments = {**_timm_arguments("resnet", f"resnet{depth}"), "use_pre_activation": pre_activation}
    family = "resnet_v2" if pre_activation else "resnet_v1"
    return KerasHubImageBackbone(
        KERAS_HUB_CLASSES[family], arguments, image_shape, pooling, normalization, dtype, name=name
    )


@BACKBONES.register("resnet_v1")
def resnet_v1(depth=50, image_shape=(224, 224, 3), pooling="avg", normalization="none", dtype=None, name=None):
    """KerasHub's ResNet (He et al., 2016) of `depth` 18, 26, 34, 50, 101 or 152 layers."""
    return _resnet(depth, False, image_shape, pooling, normalization, dtype, name)


@BACKBONES.register("resnet_v2")
def resnet_v2(depth=50, image_shape=(224, 224, 3), pooling="avg", normalization="none", dtype=None, name=None):
    """KerasHub's pre-activation ResNet v2 (He et al., 2016) of `depth` 18 to 152 layers."""
    return _resnet(depth, True, image_shape, pooling, normalization, dtype, name)


@BACKBONES.register("mobilenet_v3")
def mobilenet_v3(
    variant="small_100", image_shape=(224, 224, 3), pooling="avg", normalization="none", dtype=None, name=None
):
    """KerasHub's MobileNetV3 (Howard et al., 2019): `small_050`, `small_100` or `large_100`."""
    _choice(variant, MOBILENET_V3_VARIANTS, "variant")
    arguments = _timm_arguments("mobilenet", f"mobilenetv3_{variant}")
    return KerasHubImageBackbone(
        KERAS_HUB_CLASSES["mobilenet_v3"], arguments, image_shape, pooling, normalization, dtype, name=name
    )


@BACKBONES.register("efficientnet")
def efficientnet(
    variant="b0",
    dropout=0.2,
    image_shape=(224, 224, 3),
    pooling="avg",
    normalization="none",
    dtype=None,
    name=None,
):
    """KerasHub's EfficientNet (Tan and Le, 2019) `b0`..`b7` and `lite0`, and EfficientNetV2 as timm
    built it (`v2_t`, `v2_s`, `v2_m`); `dropout` is the blocks' drop-connect rate."""
    _choice(variant, EFFICIENTNET_VARIANTS, "variant")
    base = "b0" if variant in _EFFICIENTNET_SCALING else _EFFICIENTNET_TIMM.get(variant, variant)
    arguments = _timm_arguments("efficientnet", f"efficientnet_{base}")
    if variant in _EFFICIENTNET_SCALING:
        width, depth = _EFFICIENTNET_SCALING[variant]
        blocks = len(arguments["stackwise_num_repeats"])
        arguments.update(stackwise_width_coefficients=[width] * blocks, stackwise_depth_coefficients=[depth] * blocks)
    arguments["dropout"] = dropout
    return KerasHubImageBackbone(
        KERAS_HUB_CLASSES["efficientnet"], arguments, image_shape, pooling, normalization, dtype, name=name
    )


@BACKBONES.register("vit")
def vit(
    size="base",
    patch_size=16,
    dropout=0.0,
    image_shape=(224, 224, 3),
    pooling="auto",
    normalization="unit",
    dtype=None,
    name=None,
):
    """KerasHub's Vision Transformer (Dosovitskiy et al., 2021) of `size` tiny, small, base, large or
    huge with square patches of `patch_size` pixels (ViT-B/16: size base, patch_size 16)."""
    _choice(size, tuple(VIT_SIZES), "size")
    layers, heads, width, mlp_width = VIT_SIZES[size]
    arguments = {
        "patch_size": (patch_size, patch_size),
        "num_layers": layers,
        "num_heads": heads,
        "hidden_dim": width,
        "mlp_dim": mlp_width,
        "dropout_rate": dropout,
    }
    return KerasHubImageBackbone(
        KERAS_HUB_CLASSES["vit"], arguments, image_shape, pooling, normalization, dtype, name=name
    )


@BACKBONES.register("cspnet")
def cspnet(variant="darknet53", image_shape=(224, 224, 3), pooling="avg", normalization="none", dtype=None, name=None):
    """KerasHub's cross-stage-partial networks (Wang et al., 2020): CSP `darknet53`, `resnet50` or `resnext50`."""
    _choice(variant, CSPNET_VARIANTS, "variant")
    arguments = _timm_arguments("cspnet", f"csp{variant}")
    return KerasHubImageBackbone(
        KERAS_HUB_CLASSES["cspnet"], arguments, image_shape, pooling, normalization, dtype, name=name
    )
