"""Padding-free BERT training computes KerasHub's padded function: the same outputs at real positions,
the same gradients, and the same weights after training on real R8 batches."""

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_TEXT

from garden.errors import GardenError
from garden.models import lora as lora_module
from garden.models.backbones.bert import BertEncoder
from garden.models.heads.span_qa import PAD_LOGIT
from garden.models.quantization import quantize_backbones
from garden.models.task_model import build_task_model
from garden.registry import LOSSES
from garden.resolve import experiment_config
from garden.train.strategy import resolve_strategy
from garden.train.trainer import Trainer


def test_padding_free_layers_match_the_padded_backbone_at_every_real_position():
    sizes = dict(
        vocabulary_size=100,
        num_layers=2,
        num_heads=4,
        hidden_dim=32,
        intermediate_dim=64,
        dropout=0.0,
        max_sequence_length=16,
    )
    encoder = BertEncoder(**sizes, padding_free=True)
    padded = keras_hub.models.BertBackbone(**sizes)
    padded.set_weights(encoder.encoder.get_weights())
    rng = np.random.default_rng(0)
    mask = (np.arange(16)[None] < np.array([16, 3, 9, 1])[:, None]).astype("int32")  # a full row and a lone [CLS]
    inputs = {
        "token_ids": rng.integers(1, 100, (4, 16)).astype("int32") * mask,
        "segment_ids": rng.integers(0, 2, (4, 16)).astype("int32") * mask,
        "padding_mask": mask,
    }
    with tf.GradientTape(persistent=True) as tape:
        free = encoder.encoder(inputs, training=True)
        reference = padded(inputs, training=True)
        losses = [
            tf.reduce_sum(out["pooled_output"] ** 2) + tf.reduce_sum(out["sequence_output"] ** 2 * mask[..., None])
            for out in (free, reference)
        ]
    real = mask[..., None].astype(bool)
    np.testing.assert_allclose(
        np.where(real, free["sequence_output"], 0), np.where(real, reference["sequence_output"], 0), atol=2e-6
    )
    assert np.all(np.asarray(free["sequence_output"])[~mask.astype(bool)] == 0)  # pads come out as zeros
    assert (
        np.abs(np.asarray(reference["sequence_output"])[~mask.astype(bool)]).max() > 0.1
    )  # and are not in KerasHub's graph
    np.testing.assert_allclose(free["pooled_output"], reference["pooled_output"], atol=2e-6)
    gradients = [
        tape.gradient(loss, model.trainable_variables) for loss, model in zip(losses, (encoder.encoder, padded))
    ]
    assert len(gradients[0]) == len(gradients[1]) > 20 and all(g is not None for g in gradients[0])
    for variable, free_gradient, padded_gradient in zip(padded.trainable_variables, *gradients):
        np.testing.assert_allclose(
            tf.convert_to_tensor(free_gradient),
            tf.convert_to_tensor(padded_gradient),
            rtol=1e-5,
            atol=1e-4,
            err_msg=variable.path,
        )  # float32 sums in another order; gradients reach 30
    inference = encoder.encoder(inputs, training=False)["sequence_output"]  # KerasHub's graph itself
    np.testing.assert_array_equal(inference, padded(inputs, training=False)["sequence_output"])
    again = BertEncoder.from_config(encoder.get_config())
    assert again.get_config()["padding_free"] and type(again.encoder).__name__ == "PaddingFreeBertBackbone"


def test_a_cls_pooled_task_trains_the_last_layer_at_cls_only():
    sizes = dict(
        vocabulary_size=100,
        num_layers=2,
        num_heads=4,
        hidden_dim=32,
        intermediate_dim=64,
        dropout=0.0,
        max_sequence_length=16,
    )
    model = build_task_model(
        experiment_config(
            "r8_student",
            sets=[f"task.model.backbone.params.{k}={v}" for k, v in sizes.items()]
            + ["task.model.backbone.params.padding_free=true"],
        ).task.model,
        "r8",
    )
    encoder = model.get_layer("backbone").encoder
    assert encoder.pooled_only  # the classification head reads [CLS]'s pooled output alone
    padded = keras_hub.models.BertBackbone(**sizes)
    padded.set_weights(encoder.get_weights())
    rng = np.random.default_rng(1)
    mask = (np.arange(16)[None] < np.array([16, 3, 9, 1])[:, None]).astype("int32")
    inputs = {
        "token_ids": rng.integers(1, 100, (4, 16)).astype("int32") * mask,
        "segment_ids": rng.integers(0, 2, (4, 16)).astype("int32") * mask,
        "padding_mask": mask,
    }
    with tf.GradientTape(persistent=True) as tape:
        outputs = [backbone(inputs, training=True) for backbone in (encoder, padded)]
        losses = [tf.reduce_sum(out["pooled_output"] ** 2) for out in outputs]
    np.testing.assert_allclose(outputs[0]["pooled_output"], outputs[1]["pooled_output"], atol=2e-6)
    assert np.all(np.asarray(outputs[0]["sequence_output"])[:, 1:] == 0)  # the last layer ran at [CLS] only
    gradients = [tape.gradient(loss, backbone.trainable_variables) for loss, backbone in zip(losses, (encoder, padded))]
    for variable, free_gradient, padded_gradient in zip(padded.trainable_variables, *gradients):
        np.testing.assert_allclose(
            tf.convert_to_tensor(free_gradient),
            tf.convert_to_tensor(padded_gradient),
            rtol=1e-5,
            atol=1e-5,
            err_msg=variable.path,
        )
    backbone = model.get_layer("backbone")
    for features, pooling, expected in [
        ("sequence_output", "cls", False),
        ("pooled_output", "mean", False),
        ("pooled_output", "cls", True),
    ]:
        backbone.pooling = pooling
        backbone.train_for(features)
        assert encoder.pooled_only == expected, (features, pooling)


def train_weights(run_dir, *overrides):
    config = experiment_config(
        "r8_minilm",
        sets=[
            *TINY_TEXT,
            "task.model.backbone.params.dropout=0.0",
            "task.model.head.params.dropout=0.0",
            "trainer.train_steps=20",
            "trainer.steps_per_loop=10",
            "trainer.checkpoint_interval=20",
            "trainer.validation_interval=20",
            *overrides,
        ],
    )
    trainer = Trainer(config, str(run_dir), resolve_strategy(config.runtime))
    initial = {variable.path: variable.numpy() for variable in trainer.model.trainable_variables}
    trainer.train()
    return initial, {variable.path: variable.numpy() for variable in trainer.model.trainable_variables}


def test_padding_free_training_on_r8_ends_at_the_padded_runs_weights(tmp_path):
    sgd = [
        "trainer.optimizer_config.optimizer={type: sgd, sgd: {momentum: 0.9}}",  # Adam would turn rounding into steps
        "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=0.5",
    ]
    cls = "task.model.backbone.params.pooling=cls"  # padding-free layers, then the last one at [CLS] only
    initial, padded = train_weights(tmp_path / "padded", *sgd, cls, "task.model.backbone.params.padding_free=false")
    _, free = train_weights(tmp_path / "free", *sgd, cls)  # padding-free is the default
    assert sorted(free) == sorted(padded) and len(padded) > 20
    for path, weights in padded.items():  # 20 steps on R8 batches of 64 tokens, with padding
        np.testing.assert_allclose(free[path], weights, rtol=1e-4, atol=1e-5, err_msg=path)
    moved = sum(not np.allclose(initial[path], weights, atol=1e-3) for path, weights in padded.items())
    assert moved > len(padded) // 2  # the runs trained: most weights moved, and moved alike
    with pytest.raises(
        GardenError, match="padding_free=true cannot be compiled by XLA .*; set runtime.enable_xla=false"
    ):
        train_weights(tmp_path / "xla", "task.model.backbone.params.padding_free=true", "runtime.enable_xla=true")
    assert not (tmp_path / "xla").exists()  # XLA aborts the process on its dynamic shapes: refused before anything


def test_the_default_trains_padding_free_unless_xla_compiles_the_step():
    for xla, unpadded in [(False, True), (True, False)]:
        config = experiment_config("r8_minilm", sets=[*TINY_TEXT, f"runtime.enable_xla={xla}"])
        model = build_task_model(config.task.model, "r8")
        backbone = model.get_layer("backbone")
        backbone.check_training(config.runtime)
        assert backbone.padding_free is None and backbone.encoder.unpadded == unpadded
    explicit = experiment_config("r8_minilm", sets=[*TINY_TEXT, "task.model.backbone.params.padding_free=false"])
    assert (
        type(build_task_model(explicit.task.model, "r8").get_layer("backbone").encoder) is keras_hub.models.BertBackbone
    )


SIZES = [f"task.model.backbone.params.{k}={v}" for k, v in dict(num_layers=2, hidden_dim=32, num_heads=4).items()]
LENGTHS = np.array([16, 5, 11])


def free_and_padded(experiment, *overrides):
    """(padding-free model, padded model with its weights, a padded batch of LENGTHS) of `experiment`."""
    sets = [*TINY_TEXT, *SIZES, "task.model.backbone.params.dropout=0.0", *overrides]
    free = build_task_model(experiment_config(experiment, sets=sets).task.model, "free")
    padded_config = experiment_config(experiment, sets=[*sets, "task.model.backbone.params.padding_free=false"])
    padded = build_task_model(padded_config.task.model, "padded")
    padded.set_weights(free.get_weights())
    mask = (np.arange(16)[None] < LENGTHS[:, None]).astype("int32")
    batch = {
        "token_ids": np.random.default_rng(2).integers(1, 100, (3, 16)).astype("int32") * mask,
        "segment_ids": np.zeros((3, 16), "int32"),
        "padding_mask": mask,
    }
    return free, padded, batch


def assert_same_training_step(free, padded, batch, loss, labels):
    """The two models' training losses agree, and so do their gradients, variable by variable."""
    with tf.GradientTape(persistent=True) as tape:
        losses = [tf.reduce_sum(loss(labels, model(batch, training=True)["logits"])) for model in (free, padded)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    gradients = [tape.gradient(value, model.trainable_variables) for value, model in zip(losses, (free, padded))]
    assert all(g is not None for g in gradients[0]) and len(gradients[0]) == len(gradients[1])
    for variable, a, b in zip(free.trainable_variables, *gradients):
        np.testing.assert_allclose(
            tf.convert_to_tensor(a), tf.convert_to_tensor(b), rtol=1e-4, atol=1e-5, err_msg=variable.path
        )
    return gradients[0]


def test_span_qa_masks_pads_so_padded_padding_free_and_unpadded_batches_agree():
    """Span QA scores every position: its pads are masked, so the start/end logits at real positions
    and the loss do not depend on the padding, nor on whether training computed the pads."""
    free, padded, batch = free_and_padded("squad_minilm")
    outputs = [model(batch, training=True)["logits"].numpy() for model in (free, padded)]
    real = batch["padding_mask"].astype(bool)
    np.testing.assert_allclose(outputs[0][real], outputs[1][real], atol=2e-5)
    assert np.all(outputs[0][~real] == PAD_LOGIT) and np.all(outputs[1][~real] == PAD_LOGIT)
    assert_same_training_step(
        free, padded, batch, LOSSES.build("span_crossentropy"), tf.constant([[3, 6], [1, 4], [9, 10]])
    )
    for row, length in enumerate(LENGTHS):  # each row alone, unpadded, gives its logits at its real positions
        alone = {name: values[row : row + 1, :length] for name, values in batch.items()}
        np.testing.assert_allclose(
            padded(alone, training=False)["logits"][0], padded(batch, training=False)["logits"][row, :length], atol=2e-5
        )


@pytest.mark.parametrize("quantization", ["", "int8"])
def test_padding_free_trains_lora_adapters_as_the_padded_model_does(quantization):
    """The padding-free layers call each projection layer itself: its adapters (and its int8 kernel,
    under QLoRA) take part as in the padded graph."""
    lora = ["task.model.lora.rank=4", f"task.model.quantization={quantization}", "task.model.head.params.dropout=0.0"]
    free, padded, batch = free_and_padded("r8_minilm", *lora)
    if quantization:
        for model in (free, padded):
            quantize_backbones({"model": model}, quantization)
        padded.set_weights(free.get_weights())
    for model in (free, padded):  # B starts at zero: move it so that A's gradients are not zero either
        for variable in lora_module.adapter_variables(model):
            variable.assign(np.random.default_rng(3).normal(scale=0.1, size=variable.shape))
    gradients = assert_same_training_step(
        free, padded, batch, LOSSES.build("sparse_categorical_crossentropy"), tf.constant([1, 0, 5])
    )
    names = [v.path for v in free.trainable_variables]
    adapted = [g for name, g in zip(names, gradients) if "lora" in name and "self_attention" in name]
    assert len(adapted) >= 8 and all(np.abs(tf.convert_to_tensor(g)).max() > 0 for g in adapted)
