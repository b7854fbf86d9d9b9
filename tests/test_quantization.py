"""Weight-only int8 and int4 (garden quantize) on a trained shakespeare_char, judged by `garden eval`
on the held-out plays, and QLoRA: LoRA on an int8 base imported from a GPT-2 folder, exported."""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import garden
from test_lora import _lora_overrides
from test_pretrained_decoders import _write_gpt2

from garden.models import hf_import
from garden.models.quantization import quantize
from garden.run import Run

BOUNDS = {"int8": (0.01, 0.3), "int4": (0.05, 0.2)}  # (held-out loss increase, size vs float32)


def _validation_loss(run_dir):
    return json.loads(garden("eval", run_dir).stdout.splitlines()[-1])["loss"]


def _trained_loss(run_dir):
    return [json.loads(line) for line in open(run_dir / "metrics.jsonl") if '"validation"' in line][-1]["loss"]


def _checkpoint_bytes(run_dir):
    return sum(f.stat().st_size for f in (run_dir / "model").glob("ckpt-*.data-*"))


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_a_quantized_decoder_loses_little_and_weighs_less(trained_lm, tmp_path, mode):
    out = tmp_path / mode
    printed = json.loads(garden("quantize", trained_lm, "--mode", mode, "--out", out).stdout.splitlines()[-1])
    increase, ratio = (
        _validation_loss(out) - _trained_loss(trained_lm),
        _checkpoint_bytes(out) / _checkpoint_bytes(trained_lm),
    )
    loss_bound, size_bound = BOUNDS[mode]
    assert increase <= loss_bound and ratio <= size_bound, (increase, ratio)  # 0.00004 / 0.26, 0.014 / 0.15
    assert printed["size_ratio"] <= size_bound
    # the run generates as the quantized Keras model does; its kernels are Keras's int8 (int4 packed in int8)
    run = Run(str(out))
    kernels = [v for v in run.model.weights if v.path.endswith("query/kernel")]
    assert kernels and all(v.dtype == "int8" for v in kernels)
    again = garden("quantize", out, "--mode", mode, "--out", tmp_path / "again", check=False)
    assert again.returncode == 2 and "is quantized already" in again.stderr and not (tmp_path / "again").exists()


def test_lora_on_an_int8_gpt2_trains_and_its_saved_model_generates_as_garden_does(tmp_path):
    folder, run = tmp_path / "gpt2", tmp_path / "run"
    folder.mkdir()
    _write_gpt2(folder)
    overrides = _lora_overrides(folder, 10, **{"task.model.quantization": "int8"})
    garden("train", "shakespeare_gpt2", *overrides, "--run-dir", run)
    losses = [json.loads(line)["loss"] for line in open(run / "metrics.jsonl") if '"train"' in line]
    assert losses[-1] < losses[0], losses
    # the base is the folder's weights as Keras quantizes them, bit for bit, and the adapters sit beside it
    published = hf_import.encoder(str(folder))
    dense = published.hub.get_layer("transformer_layer_0")._feedforward_intermediate_dense.kernel.numpy()
    quantize(published, "int8")
    loaded = Run(str(run)).model.get_layer("backbone")
    ours = {v.path: v.numpy() for v in loaded.weights if "lora" not in v.path}
    theirs = {v.path: v.numpy() for v in published.weights}
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    # Keras's int8 is abs-max per output channel: w * 127 / max |w| of its column, rounded
    expected = np.round(dense * (127 / (np.abs(dense).max(axis=0) + 1e-7))).astype(np.int8)
    assert np.array_equal(ours["transformer_layer_0/feedforward_intermediate_dense/kernel"], expected)

    printed = garden("generate", run, "--prompt", "The bank", "--max-new-tokens", "12", "--temperature", "0").stdout
    garden("export", run, "--format", "saved_model", "--max-length", "48")
    generate = tf.saved_model.load(str(run / "export" / "saved_model")).signatures["generate"]
    text = generate(
        prompt=tf.constant(["The bank"]),
        max_new_tokens=12,
        temperature=0.0,
        top_k=0,
        top_p=1.0,
        seed=0,
        stop=tf.constant([], tf.string),
    )["text"].numpy()[0]
    assert "The bank" + text.decode("utf-8", errors="replace") == printed.rstrip("\n")
