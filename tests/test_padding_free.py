"""Padding-free BERT training computes KerasHub's padded function: the same outputs at real positions,
the same gradients, and the same weights after training on real R8 batches."""

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_TEXT

from garden.config import experiment_config
from garden.errors import GardenError
from garden.models.backbones.bert import BertEncoder
from garden.models.task_model import build_task_model
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
    initial, padded = train_weights(tmp_path / "padded", *sgd, cls)
    _, free = train_weights(tmp_path / "free", *sgd, cls, "task.model.backbone.params.padding_free=true")
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
