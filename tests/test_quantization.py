"""Weight-only int8 and int4 (garden quantize) on a trained shakespeare_char, judged by `garden eval`
on the held-out plays. (LoRA on an int8 base: tests/test_lora.py.)"""

import json

import pytest
from conftest import garden

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
