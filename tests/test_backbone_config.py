"""Every registered backbone's `get_config()` keeps each constructor argument: built with arguments
other than its defaults, `from_config(get_config())` builds the same weight shapes, gives the same
config and, given the same weights, the same outputs."""

import inspect

import keras_hub
import numpy as np
import pytest

from garden.models.backbones.decoder import DecoderBackbone
from garden.models.backbones.resnet import ResNetBackbone
from garden.models.backbones.static import StaticEmbedding, save_table
from garden.models.backbones.text_encoder import TextEncoder
from garden.registry import BACKBONES
from garden.text_family import text_family

TEXT = dict(
    vocabulary_size=60,
    num_layers=1,
    num_heads=4,
    hidden_dim=16,
    intermediate_dim=24,
    dropout=0.2,
    max_sequence_length=24,
)
IMAGE = dict(image_shape=(32, 32, 3), pooling="max", normalization="imagenet")
GEMMA = dict(
    vocabulary_size=60,
    num_layers=2,
    num_query_heads=2,
    num_key_value_heads=2,
    hidden_dim=16,
    intermediate_dim=24,
    head_dim=8,
    query_head_dim_normalize=False,
    attention_logit_soft_cap=50.0,
    final_logit_soft_cap=30.0,
    sliding_window_size=8,
    layer_norm_epsilon=1e-5,
    dropout=0.1,
)
# Every registered backbone (and one `keras_hub.CLASS`), each argument away from its default.
ARGUMENTS = {
    "albert": {
        **TEXT,
        "num_layers": 4,
        "embedding_dim": 8,
        "num_groups": 2,
        "num_inner_repetitions": 2,
        "num_segments": 3,
        "activation": "gelu",
        "pooling": "mean",
    },
    "bert": {**TEXT, "num_segments": 3, "pooling": "mean", "padding_free": False},
    "deberta_v3": {**TEXT, "bucket_size": 8, "pooling": "mean"},
    "decoder": dict(
        vocabulary_size=60,
        num_layers=1,
        num_heads=2,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=24,
        head_dim=4,
        max_wavelength=500,
        sliding_window=8,
    ),
    "distil_bert": {**TEXT, "pooling": "mean"},
    "electra": {**TEXT, "embedding_dim": 8, "num_segments": 3, "activation": "gelu_approximate", "pooling": "mean"},
    "gemma": {
        **GEMMA,
        "use_post_ffw_norm": True,
        "use_post_attention_norm": True,
        "use_sliding_window_attention": True,
    },
    "gemma3": {
        **GEMMA,
        "use_query_key_norm": False,
        "use_post_ffw_norm": False,
        "use_post_attention_norm": False,
        "use_sliding_window_attention": False,
        "local_rope_scaling_factor": 2.0,
        "global_rope_scaling_factor": 4.0,
    },
    "gpt2": TEXT,
    "llama": dict(
        vocabulary_size=60,
        num_layers=1,
        num_query_heads=2,
        hidden_dim=16,
        intermediate_dim=24,
        num_key_value_heads=1,
        rope_max_wavelength=500,
        rope_position_scaling_factor=2.0,
        rope_frequency_adjustment_factor=8.0,
        rope_low_freq_factor=1.0,
        rope_high_freq_factor=4.0,
        rope_pretraining_sequence_length=64,
        layer_norm_epsilon=1e-6,
        dropout=0.1,
        tie_word_embeddings=True,
    ),
    "mistral": dict(
        vocabulary_size=60,
        num_layers=1,
        num_query_heads=2,
        hidden_dim=16,
        intermediate_dim=24,
        num_key_value_heads=1,
        rope_max_wavelength=500,
        rope_scaling_factor=2.0,
        layer_norm_epsilon=1e-6,
        sliding_window=8,
        head_dim=12,
        dropout=0.1,
    ),
    "qwen2": dict(
        vocabulary_size=60,
        num_layers=1,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=24,
        rope_max_wavelength=500,
        rope_scaling_factor=2.0,
        layer_norm_epsilon=1e-5,
        dropout=0.1,
        tie_word_embeddings=False,
        use_sliding_window_attention=True,
        sliding_window_size=8,
    ),
    "qwen3": dict(
        vocabulary_size=60,
        num_layers=1,
        num_query_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        hidden_dim=16,
        intermediate_dim=24,
        rope_max_wavelength=500,
        rope_scaling_factor=2.0,
        layer_norm_epsilon=1e-5,
        dropout=0.1,
        tie_word_embeddings=False,
        sliding_window_size=8,
    ),
    "resnet": dict(
        image_shape=(12, 12, 1),
        stem_width=8,
        stem_strides=2,
        stage_widths=(8, 16),
        blocks_per_stage=2,
        batch_norm_momentum=0.8,
    ),
    "roberta": {**TEXT, "pooling": "mean"},
    "static": dict(vocabulary_size=60, hidden_dim=8, trainable_embeddings=False),
    "xlm_roberta": {**TEXT, "pooling": "mean"},
    "resnet_v1": {**IMAGE, "depth": 18},
    "resnet_v2": {**IMAGE, "depth": 18},
    "mobilenet_v3": {**IMAGE, "variant": "small_050"},
    "efficientnet": {**IMAGE, "variant": "lite0", "dropout": 0.3},
    "vit": {**IMAGE, "size": "tiny", "patch_size": 8, "dropout": 0.1, "pooling": "cls"},
    "cspnet": {**IMAGE, "variant": "resnet50"},
    "keras_hub.ResNetBackbone": {
        **IMAGE,
        "input_conv_filters": [64],
        "input_conv_kernel_sizes": [3],
        "stackwise_num_filters": [64, 32],
        "stackwise_num_blocks": [1, 2],
        "stackwise_num_strides": [1, 2],
        "block_type": "basic_block",
        "use_pre_activation": True,
    },
}
UNSET = {"static": {"distilled_path"}}  # its table sets the sizes: see the last test
NOT_ARGUMENTS = ("self", "dtype", "kwargs")
KERAS_KEYS = {"name", "trainable", "dtype"}


def example(backbone) -> dict[str, np.ndarray]:
    """Two examples for the backbone's inputs: token ids, ones for masks and segments, random images."""
    rng = np.random.default_rng(0)
    inputs = {}
    for name, tensor in backbone.input.items():
        shape = [2, *(8 if size is None else size for size in tensor.shape[1:])]
        if name == "token_ids":
            inputs[name] = rng.integers(1, 50, shape).astype("int32")
        elif "int" in str(tensor.dtype):
            inputs[name] = np.ones(shape, "int32")
        else:
            inputs[name] = rng.random(shape, dtype=np.float32)
    return inputs


def test_every_registered_backbone_has_arguments_here():
    assert set(BACKBONES.names()) <= set(ARGUMENTS)


@pytest.mark.parametrize("name", sorted(ARGUMENTS))
def test_get_config_round_trips_every_constructor_argument(name):
    arguments = ARGUMENTS[name]
    built = BACKBONES.get(name)
    defaults = BACKBONES.defaults(name)
    assert set(arguments) == set(defaults) - UNSET.get(name, set()), "give every parameter"
    assert [key for key, value in arguments.items() if value == defaults[key]] == [], "give other values"

    backbone = built(**arguments, name="backbone")
    config = backbone.get_config()
    if inspect.isclass(built):  # every constructor argument, as given
        parameters = set(inspect.signature(built.__init__).parameters) - set(NOT_ARGUMENTS)
        assert set(config) == KERAS_KEYS | parameters
        assert {key: config[key] for key in arguments} == arguments
        assert {key: config[key] for key in UNSET.get(name, ())} == {key: defaults[key] for key in UNSET.get(name, ())}
    else:  # a shortcut to KerasHubImageBackbone: its own arguments, the KerasHub class's among them
        assert {key: config[key] for key in IMAGE} == {key: arguments[key] for key in IMAGE}
        assert set(config) == KERAS_KEYS | {"class_name", "arguments", *IMAGE}

    rebuilt = type(backbone).from_config(config)
    assert rebuilt.get_config() == config
    assert [tuple(w.shape) for w in rebuilt.weights] == [tuple(w.shape) for w in backbone.weights]
    rebuilt.set_weights(backbone.get_weights())
    inputs = example(backbone)
    expected, actual = backbone(inputs, training=False), rebuilt(inputs, training=False)
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-6, err_msg=key)


def test_get_config_keeps_the_values_the_constructor_settled(tmp_path):
    """A decoder's head_dim left unset is hidden_dim // num_heads, a static table's folder sets the
    embeddings' size, a ResNet's shapes are tuples: get_config() gives them as the model has them."""
    decoder = DecoderBackbone(vocabulary_size=20, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=8)
    assert decoder.get_config()["head_dim"] == 8 and decoder.head_dim == 8

    save_table(str(tmp_path), np.random.default_rng(0).normal(size=(30, 6)))
    static = StaticEmbedding(distilled_path=str(tmp_path), vocabulary_size=60, hidden_dim=8)
    config = static.get_config()
    assert (config["vocabulary_size"], config["hidden_dim"], config["distilled_path"]) == (30, 6, str(tmp_path))
    assert StaticEmbedding.from_config(config).get_config() == config

    resnet = ResNetBackbone(image_shape=[12, 12, 1], stem_width=4, stage_widths=[4, 8])
    assert (resnet.get_config()["image_shape"], resnet.get_config()["stage_widths"]) == ((12, 12, 1), (4, 8))


@pytest.mark.parametrize("name", [n for n in BACKBONES.names() if text_family(n).tokenizers])
def test_every_text_family_declares_what_its_readers_look_up(name):
    """A family's declaration (garden/text_family.py) is read by the tokenizers, the text tasks, the
    generator and the checkpoint importer without defaults to fall back on: every name in it must
    resolve. Its tokenizer kinds are ones Garden builds; its KerasHub tokenizer classes exist and take
    its arguments; an encoder's special tokens name start, end and pad (pairs are packed with them);
    a family that imports Hugging Face checkpoints names its vocabulary file, and its size keys are
    constructor arguments of its backbone, each read from one config.json key."""
    family, backbone = text_family(name), BACKBONES.get(name)
    assert set(family.tokenizers) <= {"wordpiece", "byte_bpe", "sentencepiece", "character"}
    for kind, hub in [(family.tokenizers[0], family.hub_tokenizer), *family.other_hub_tokenizers.items()]:
        assert kind in family.tokenizers
        assert not hub or hasattr(keras_hub.models, hub), hub
    if family.hub_tokenizer_arguments:
        parameters = inspect.signature(getattr(keras_hub.models, family.hub_tokenizer).__init__).parameters
        assert set(family.hub_tokenizer_arguments) <= set(parameters)
    assert set(family.lowercase_kinds) - {"wordpiece"} <= set(family.tokenizers)
    if issubclass(backbone, TextEncoder):
        assert {"start", "end", "pad"} <= set(family.special_tokens) and family.separator_tokens in (1, 2)
    if family.hf_model_types:
        assert family.vocabulary_file
        arguments = set(inspect.signature(backbone.__init__).parameters)
        assert set(family.hf_sizes) <= arguments, set(family.hf_sizes) - arguments
        assert len(set(family.hf_sizes.values())) == len(family.hf_sizes)
        if issubclass(backbone, TextEncoder):  # decoders' sizes come from KerasHub's converters
            assert {"vocabulary_size", "num_layers", "num_heads", "hidden_dim"} <= set(family.hf_sizes)
