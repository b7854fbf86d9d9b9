"""Any KerasHub image backbone as a Garden backbone: `keras_hub.CLASS` (for example
`keras_hub.ResNetBackbone`) with the class's constructor arguments as its params.

KerasHub backbones return feature maps [batch, h, w, channels] (CNNs) or tokens [batch, n, width]
(ViT); Garden's heads read one vector, so the wrapper pools them. Pixels come in as Garden's image
tasks give them, in [0, 1]; `normalization` maps them to what the weights expect ("imagenet": minus
ImageNet's mean, over its standard deviation, as KerasHub's ImageConverters of timm presets do;
"unit": [-1, 1]). Weights start random: warm starts load them (see garden/tasks/image_classification.py).
"""

import functools
import inspect
import types

import keras
from keras import ops

from garden.errors import GardenError, did_you_mean
from garden.models.backbones.backbone import Backbone
from garden.registry import BACKBONES

POOLINGS = ("auto", "avg", "max", "cls")
NORMALIZATIONS = ("none", "imagenet", "unit")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_SIZE_ARGUMENTS = ("image_shape", "input_shape")  # what KerasHub's image backbones call the input size
_NOT_ARGUMENTS = {"self", "dtype", "kwargs", "name", "data_format", *_SIZE_ARGUMENTS}


@functools.cache
def _image_classes() -> dict[str, type]:
    """KerasHub's backbone classes that take an image size, by name."""
    import keras_hub

    return {
        name: cls
        for name, cls in vars(keras_hub.models).items()
        if isinstance(cls, type) and issubclass(cls, keras_hub.models.Backbone) and _size_argument(cls)
    }


def hub_class(class_name: str) -> type:
    """The KerasHub image backbone class `class_name`, or one line naming the closest ones."""
    import keras_hub

    classes = _image_classes()
    if class_name not in classes:
        if hasattr(keras_hub.models, class_name):
            raise GardenError(
                f"backbone 'keras_hub.{class_name}' does not take images; keras_hub.CLASS builds KerasHub's image "
                "backbones (text encoders are Garden's bert, distil_bert, roberta, xlm_roberta, deberta_v3, electra "
                "and albert)"
            )
        raise GardenError(f"unknown backbone 'keras_hub.{class_name}'{did_you_mean(class_name, classes, 'keras_hub.')}")
    return classes[class_name]


def _size_argument(cls):
    parameters = inspect.signature(cls.__init__).parameters
    return next((name for name in _SIZE_ARGUMENTS if name in parameters), None)


class KerasHubImageBackbone(Backbone):
    """A KerasHub image backbone (`class_name` built from `arguments`) on an `image` input of
    `image_shape` in [0, 1], normalized, its output pooled into `pooled_output` [batch, width]:
    `avg`/`max` over positions, `cls` the class token of a token output; `auto` is `cls` for a ViT
    with a class token and `avg` otherwise. The KerasHub model is the layer `keras_hub_backbone`."""

    def __init__(
        self,
        class_name: str,
        arguments: dict,
        image_shape=(224, 224, 3),
        pooling: str = "auto",
        normalization: str = "none",
        dtype=None,
        **kwargs,
    ):
        cls = hub_class(class_name)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling '{pooling}' is not one of {', '.join(POOLINGS)}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization '{normalization}' is not one of {', '.join(NORMALIZATIONS)}")
        image_shape = tuple(image_shape)
        hub = cls(**arguments, **{_size_argument(cls): image_shape}, dtype=dtype, name="keras_hub_backbone")
        _run_depthwise_as_depthwise(hub)
        image = keras.Input(shape=image_shape, name="image")
        features = hub(_normalized(image, normalization, dtype))
        pooled = _pooled(features, pooling, getattr(hub, "use_class_token", False), dtype)
        super().__init__(inputs={"image": image}, outputs={"pooled_output": pooled}, dtype=dtype, **kwargs)
        self.keep_arguments(arguments=dict(arguments), image_shape=image_shape)  # a copy; a tuple

    @property
    def hub(self) -> keras.Model:
        return self.get_layer("keras_hub_backbone")


def _run_depthwise_as_depthwise(model):
    """Makes each grouped `Conv2D` with one input channel per group (a depthwise convolution, as
    KerasHub's MobileNet writes it) run TensorFlow's depthwise kernel: the grouped one runs through
    XLA on CPUs and its gradient made MobileNetV3-Small train 17x slower (docs/benchmarks.md). The
    same weights and arithmetic; TFLite then sees DEPTHWISE_CONV_2D."""
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D) and layer.groups > 1 and layer.kernel.shape[2] == 1:
            layer.convolution_op = types.MethodType(_depthwise_op, layer)


def _depthwise_op(layer, inputs, kernel):
    return ops.depthwise_conv(
        inputs,
        ops.transpose(kernel, (0, 1, 3, 2)),  # [h, w, 1, channels] -> [h, w, channels, 1]
        strides=layer.strides,
        padding=layer.padding,
        data_format=layer.data_format,
        dilation_rate=layer.dilation_rate,
    )


def _normalized(image, normalization, dtype):
    if normalization == "unit":
        return keras.layers.Rescaling(2.0, offset=-1.0, name="normalization", dtype=dtype)(image)
    if normalization == "imagenet":
        if image.shape[-1] != 3:
            raise ValueError("normalization 'imagenet' needs RGB images (image_shape [H, W, 3])")
        variance = [s * s for s in IMAGENET_STD]
        return keras.layers.Normalization(mean=IMAGENET_MEAN, variance=variance, name="normalization", dtype=dtype)(
            image
        )
    return image


def _pooled(features, pooling, class_token, dtype):
    if len(features.shape) == 4:
        if pooling == "cls":
            raise ValueError("pooling 'cls' reads a class token; this backbone returns a feature map: use avg or max")
        layer = keras.layers.GlobalMaxPooling2D if pooling == "max" else keras.layers.GlobalAveragePooling2D
        return layer(name="pool", dtype=dtype)(features)
    if pooling == "cls" or (pooling == "auto" and class_token):
        if not class_token:
            raise ValueError("pooling 'cls' reads a class token, and this backbone has none: use avg or max")
        return keras.layers.Lambda(lambda tokens: tokens[:, 0], name="pool", dtype=dtype)(features)
    layer = keras.layers.GlobalMaxPooling1D if pooling == "max" else keras.layers.GlobalAveragePooling1D
    return layer(name="pool", dtype=dtype)(features)


def _plain(value):
    """Whether a default fits in a YAML config (classes and functions do not: they keep KerasHub's default)."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _generic(class_name):
    """The `keras_hub.CLASS` entry: a function whose keyword parameters are the class's constructor
    arguments (None for those KerasHub requires) plus image_shape, pooling and normalization."""
    arguments, required = {}, []
    for key, parameter in inspect.signature(hub_class(class_name).__init__).parameters.items():
        if key in _NOT_ARGUMENTS or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is inspect.Parameter.empty:
            required.append(key)
            arguments[key] = None
        elif _plain(parameter.default):
            arguments[key] = parameter.default

    def build(image_shape=(224, 224, 3), pooling="auto", normalization="none", dtype=None, name=None, **given):
        missing = [key for key in required if given.get(key) is None]
        if missing:
            raise ValueError(f"keras_hub.{class_name} needs {', '.join(missing)} (KerasHub gives them no default)")
        given = {key: value for key, value in given.items() if value is not None or key not in required}
        return KerasHubImageBackbone(class_name, given, image_shape, pooling, normalization, dtype=dtype, name=name)

    own = [  # build's own keyword parameters, keyword-only like KerasHub's
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for key, parameter in inspect.signature(build).parameters.items()
        if key in ("image_shape", "pooling", "normalization")
    ]
    hub_parameters = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in arguments.items()]
    build.__signature__ = inspect.Signature(own + hub_parameters)
    build.__doc__ = f"KerasHub's {class_name} (random weights), pooled. {KerasHubImageBackbone.__doc__}"
    return build


BACKBONES.register_family("keras_hub", _generic)
