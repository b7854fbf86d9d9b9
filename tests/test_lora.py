"""LoRA (garden/models/lora.py): adapters on a frozen base, their count, their merge into the kernels
(checked against numpy), exact resume, a fine-tune of a GPT-2 folder quantized to int8 (QLoRA),
exported, and one of MiniLM on Reuters R8, evaluated merged into a plain model."""

import json

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import garden, saved_model_greedy
from safetensors.numpy import load_file
from test_pretrained_decoders import _write_gpt2

from garden.config import LoraConfig
from garden.data.checkpoints import checkpoint_dir
from garden.errors import GardenError
from garden.models import hf_import, lora
from garden.models.backbones.bert import BertEncoder
from garden.models.quantization import quantize
from garden.registry import TASKS
from garden.run import Run, run_config
from garden.run_folder import ADAPTERS

RANK, ALPHA = 2, 8.0


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    _write_gpt2(folder)
    return folder


def _adapted_gpt2(folder, **options):
    backbone = hf_import.encoder(str(folder))
    lora.add_adapters(backbone, LoraConfig(rank=RANK, alpha=ALPHA, **options))
    return backbone


def test_adapters_train_alone_and_merge_into_the_kernels_as_numpy_says(gpt2_folder):
    plain, adapted = hf_import.encoder(str(gpt2_folder)), _adapted_gpt2(gpt2_folder)
    layers = lora.adapted(adapted)
    assert sorted({layer.name for layer in layers}) == ["query", "value"]  # the default targets, in both layers
    # LoRA's count: rank x (d_in + d_out) per kernel; GPT-2's query and value kernels are [64, 4 heads, 16]
    assert sum(int(np.prod(v.shape)) for v in adapted.trainable_variables) == 2 * 2 * RANK * (64 + 64)
    assert {id(v) for v in adapted.trainable_variables} == {id(v) for v in lora.adapter_variables(adapted)}
    rng = np.random.default_rng(0)
    for variable in lora.adapter_variables(adapted):  # B starts at zero: give the adapters something to say
        variable.assign(rng.normal(0, 0.3, variable.shape).astype(np.float32))
    # numpy's merge: kernel [in, heads, dim] + alpha / rank * (A @ B) reshaped to it
    for path, layer in lora.dense_layers(plain):
        twin = dict(lora.dense_layers(adapted))[path]
        if twin in layers:
            kernel = layer.kernel.numpy()
            delta = (twin.lora_a.numpy() @ twin.lora_b.numpy()).reshape(kernel.shape)
            layer.kernel.assign(kernel + ALPHA / RANK * delta)
    ids = np.array([[5, 9, 2, 7, 1, 3]], np.int32)
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    expected = plain(inputs)["token_logits"].numpy()
    got = adapted(inputs)["token_logits"].numpy()
    assert np.abs(got - expected).max() < 1e-4
    merged = hf_import.encoder(str(gpt2_folder))
    lora.set_base_weights(merged, lora.merged_values(adapted))
    assert np.abs(merged(inputs)["token_logits"].numpy() - expected).max() < 1e-4


def test_adapter_dropout_acts_in_training_only(gpt2_folder):
    adapted = _adapted_gpt2(gpt2_folder, dropout=0.5)
    for variable in lora.adapter_variables(adapted):
        variable.assign(np.full(variable.shape, 0.2, np.float32))
    ids = np.array([[5, 9, 2, 7]], np.int32)
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    inference = [adapted(inputs)["token_logits"].numpy() for _ in range(2)]
    training = [adapted(inputs, training=True)["token_logits"].numpy() for _ in range(2)]
    assert np.array_equal(*inference) and not np.allclose(*training)  # GPT-2's own dropout is 0


def test_targets_that_match_no_layer_are_named(gpt2_folder):
    backbone = hf_import.encoder(str(gpt2_folder))
    with pytest.raises(GardenError, match=r"match no dense layer.*named attention_output, feedforward_intermediate"):
        lora.add_adapters(backbone, LoraConfig(rank=2, targets=["q_proj"]))
    result = garden(
        "train",
        "shakespeare_char",
        "--set",
        "task.model.lora.rank=4",
        "--set",
        "task.model.trainable_backbone_blocks=1",
        check=False,
    )
    assert result.returncode == 2 and "leave task.model.trainable_backbone_blocks at -1" in result.stderr
    result = garden("show", "r8_20ng_multitask", "--set", "task.tasks.20ng.model.lora.rank=4", check=False)
    assert result.returncode == 2 and "set task.model.lora or task.model.quantization" in result.stderr


def _lora_overrides(folder, steps, **extra):
    settings = {  # the backbone's sizes come from the folder's config.json
        "task.init_checkpoint": folder,
        "task.model.lora.rank": RANK,
        "task.model.lora.alpha": ALPHA,
        "task.model.lora.dropout": 0.1,
        "task.model.tokenizer.sequence_length": 32,
        "task.train_data.num_examples": 160,
        "task.validation_data.num_examples": 16,
        "trainer.train_steps": steps,
        "trainer.steps_per_loop": 5,
        "trainer.validation_interval": 5,
        "trainer.checkpoint_interval": 5,
        "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate": 1e-2,
        "trainer.optimizer_config.warmup.linear.warmup_steps": 1,
        "runtime.deterministic": True,
        **extra,
    }
    return [a for s in [f"{k}={v}" for k, v in settings.items()] for a in ("--set", s)]


def test_lora_on_an_int8_gpt2_keeps_its_base_resumes_exactly_and_its_exports_generate_as_garden_does(
    gpt2_folder, tmp_path
):
    """QLoRA's recipe: adapters (with dropout) on the folder's weights quantized to int8."""
    run, halves = tmp_path / "run", tmp_path / "halves"
    int8 = {"task.model.quantization": "int8"}
    garden("train", "shakespeare_gpt2", *_lora_overrides(gpt2_folder, 10, **int8), "--run-dir", run)
    garden("train", "shakespeare_gpt2", *_lora_overrides(gpt2_folder, 5, **int8), "--run-dir", halves)
    garden("train", "shakespeare_gpt2", *_lora_overrides(gpt2_folder, 10, **int8), "--run-dir", halves)
    adapters, resumed = load_file(run / ADAPTERS), load_file(halves / ADAPTERS)
    assert sorted(adapters) == sorted(resumed) and all(np.array_equal(adapters[k], resumed[k]) for k in adapters)
    losses = [json.loads(line)["loss"] for line in open(run / "metrics.jsonl") if '"train"' in line]
    assert losses[-1] < losses[0], losses

    # the base is the folder's weights as Keras quantizes them, bit for bit; the adapters are under 1%
    published = hf_import.encoder(str(gpt2_folder))
    size = sum(int(np.prod(v.shape)) for v in published.weights)
    dense = published.hub.get_layer("transformer_layer_0")._feedforward_intermediate_dense.kernel.numpy()
    quantize(published, "int8")
    loaded = Run(str(run)).model.get_layer("backbone")
    ours = {v.path: v.numpy() for v in loaded.weights if "lora" not in v.path}
    theirs = {v.path: v.numpy() for v in published.weights}
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    # Keras's int8 is abs-max per output channel: w * 127 / max |w| of its column, rounded
    expected = np.round(dense * (127 / (np.abs(dense).max(axis=0) + 1e-7))).astype(np.int8)
    assert np.array_equal(ours["transformer_layer_0/feedforward_intermediate_dense/kernel"], expected)
    assert sum(v.size for v in adapters.values()) < 0.01 * size

    printed = garden("generate", run, "--prompt", "The bank", "--max-new-tokens", "12", "--temperature", "0").stdout
    garden("export", run, "--format", "saved_model", "--max-length", "48")
    assert json.loads((run / "export" / "manifest.json").read_text())["artifacts"]["saved_model"]["generate_matches"]
    assert saved_model_greedy(run / "export" / "saved_model", "The bank", 12) == printed.rstrip("\n")


def test_a_lora_classifier_on_minilm_learns_reuters_and_evaluates_merged_as_trained(tmp_path):
    """MiniLM's published weights, frozen, with rank-8 adapters and a fresh head on R8 (real data):
    40 steps of 8 documents. Validation accuracy at runtime seeds 0-4: 0.760, 0.810, 0.795, 0.725,
    0.810 (mean 0.780, standard deviation 0.037); the majority class is 49% of R8."""
    run = tmp_path / "run"
    settings = [
        "task.model.lora.rank=8",
        "task.model.lora.alpha=16",
        "task.model.tokenizer.sequence_length=48",
        "task.train_data.num_examples=1280",
        "task.validation_data.num_examples=200",
        "task.test_data.num_examples=200",  # what the export is judged on
        "task.train_data.global_batch_size=8",
        "trainer.train_steps=40",
        "trainer.steps_per_loop=20",
        "trainer.validation_interval=40",
        "trainer.checkpoint_interval=40",
        "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=0.003",
        "trainer.optimizer_config.learning_rate.polynomial.decay_steps=40",
        "trainer.optimizer_config.warmup.linear.warmup_steps=4",
    ]
    garden("train", "r8_minilm", *[a for s in settings for a in ("--set", s)], "--run-dir", run)
    validation = [json.loads(line) for line in open(run / "metrics.jsonl") if '"validation"' in line][-1]
    assert validation["accuracy"] > 0.63, validation  # 4 standard deviations under the seeds' mean
    evaluated = json.loads(garden("eval", run, "--split", "validation").stdout.splitlines()[-1])
    assert abs(evaluated["accuracy"] - validation["accuracy"]) <= 1 / 200
    trained = sum(v.size for v in load_file(run / ADAPTERS).values())  # adapters and head: 0.34% of the model
    assert trained < 0.01 * Run(str(run)).model.count_params()
    # the frozen base is the published MiniLM, bit for bit, beside the trained adapters
    config = run_config(str(run))
    (model,) = TASKS.get(config.task.type)(config.task).build_models().values()
    tf.train.Checkpoint(model=model).restore(tf.train.latest_checkpoint(str(run / "model"))).assert_consumed()
    folder = checkpoint_dir("all_minilm_l6_v2")
    published = BertEncoder(**hf_import.encoder_params(folder))
    hf_import.load_into(published, folder)
    base = lora.base_weights(model.get_layer("backbone"))
    assert len(base) == len(published.weights)
    assert all(np.array_equal(ours.numpy(), theirs.numpy()) for ours, theirs in zip(base, published.weights))
    assert all(np.abs(v.numpy()).max() > 0 for v in lora.adapter_variables(model))  # B trained away from zero

    # --format keras_hub: a plain KerasHub BERT with the adapters merged, and the run's tokenizer
    garden("export", run, "--format", "keras_hub", "--out", tmp_path / "export")
    preset = str(tmp_path / "export" / "keras_hub")
    reloaded = keras_hub.models.Backbone.from_preset(preset)
    assert type(reloaded) is keras_hub.models.BertBackbone and not lora.adapted(reloaded)
    trained_run = Run(str(run))
    texts = tf.constant(["oil prices rose", "the bank cut its rates"])
    inputs = {
        k: v
        for k, v in trained_run.task.preprocess({"text": texts}).items()
        if k in ("token_ids", "padding_mask", "segment_ids")
    }
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
    for text in ("oil prices rose", "the bank cut its rates"):
        np.testing.assert_array_equal(tokenizer(text), trained_run.task.tokenizer(text))
    ours = trained_run.model.get_layer("backbone").encoder(inputs)["sequence_output"].numpy()
    theirs = reloaded(inputs)["sequence_output"].numpy()
    real = inputs["padding_mask"].numpy().astype(bool)
    np.testing.assert_allclose(theirs[real], ours[real], atol=1e-4)
    keras.backend.clear_session()
