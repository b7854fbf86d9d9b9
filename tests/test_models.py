import keras
import numpy as np
import pytest

from garden.errors import GardenError
from garden.models.backbones.resnet import ResNetBackbone
from garden.models.heads.classification import ClassificationHead
from garden.registry import BACKBONES, Registry


def test_resnet_config_round_trips_every_argument():
    backbone = ResNetBackbone(
        image_shape=(16, 16, 3),
        stem_width=8,
        stage_widths=(8, 16),
        blocks_per_stage=2,
        batch_norm_momentum=0.5,
        name="backbone",
    )
    config = backbone.get_config()
    again = ResNetBackbone.from_config(config)
    assert again.get_config() == config
    assert again.count_params() == backbone.count_params()
    assert again({"image": np.zeros((2, 16, 16, 3), np.float32)})["pooled_output"].shape == (2, 16)


def test_registered_defaults_are_the_constructor_defaults():
    defaults = BACKBONES.defaults("resnet")
    assert defaults["stage_widths"] == [32, 64, 128] and defaults["batch_norm_momentum"] == 0.9
    assert "dtype" not in defaults and "name" not in defaults


def test_registry_refuses_unknown_parameters_and_names():
    with pytest.raises(GardenError, match="backbone 'resnet' has no parameter 'widths'; did you mean 'stage_widths'"):
        BACKBONES.build("resnet", {"widths": [1]})
    parts = Registry("widget")
    parts.register("gear")(lambda size=1: size)
    assert parts.build("gear", {"size": 3}) == 3
    with pytest.raises(GardenError, match="unknown widget 'geer'; did you mean 'gear'"):
        parts.get("geer")


def test_head_logits_stay_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        head = ClassificationHead(num_classes=3, name="head")
        logits = head(keras.ops.ones((2, 5), dtype="bfloat16"))
    finally:
        keras.config.set_dtype_policy("float32")
    assert logits.dtype == "float32" and tuple(logits.shape) == (2, 3)
    assert ClassificationHead.from_config(head.get_config()).num_classes == 3
