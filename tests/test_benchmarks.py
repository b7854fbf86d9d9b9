"""The training benchmarks run end to end in --quick mode: their ratio lines parse and the systems
they compare read the same batches (their figures are measured, not asserted)."""

import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT


def quick(script, *flags):
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--quick", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_roofline_and_input_pipeline_benchmark_prints_its_ratios():
    printed = quick("training.py")
    peak = float(re.search(r"matmul peak \(float32, 4096\^3\): +([\d.]+) GFLOP/s", printed).group(1))
    fraction = float(re.search(r"fraction of matmul peak \(real input\): +([\d.]+)%", printed).group(1))
    assert peak > 0 and 0 < fraction < 100 and re.search(r"input pipeline overhead .*: +[+-][\d.]+%", printed), printed
    assert re.search(
        r"AdamW update of these weights, Keras vs Garden \(fused\): [\d.]+ ms vs [\d.]+ ms \([\d.]+x\)", printed
    ), printed


@pytest.mark.parametrize("experiment", ["r8_student", "r8_minilm"])  # [CLS] pooler; mean pooling
def test_peer_benchmark_trains_the_same_bert_in_garden_keras_hub_and_model_garden(experiment):
    printed = quick("peers.py", "--experiment", experiment)
    assert printed.startswith(f"{experiment}: BERT 1 layers") or f"\n{experiment}: BERT 1 layers" in printed, printed
    rows = re.findall(r"^(.+?) +([\d.]+) ms/step +([\d.]+) examples/s  batches ([0-9a-f]{16})$", printed, re.M)
    assert len(rows) == 6 and all(float(ms) > 0 for _, ms, _, _ in rows), printed
    assert len({read for *_, read in rows}) == 1, printed  # Garden's trainer and the peers read the same batches
    assert len(re.findall(r"^ratio Garden \((padded, best|default)\) / fastest peer: +[\d.]+x$", printed, re.M)) == 2, (
        printed
    )


def test_streaming_benchmark_compares_garden_and_model_garden_on_the_same_shards():
    printed = quick("streaming.py")
    result = json.loads(printed[printed.index("\n{") :])  # the summary closes the output
    rates = result["images_per_second"]
    assert set(rates) == {"garden", "model_garden"} and min(rates.values()) > 0
    assert abs(result["garden_vs_model_garden"] - rates["garden"] / rates["model_garden"]) < 0.01  # printed rounded
    assert all(mb >= 0 for mb in result["peak_rss_above_baseline_mb"].values())
    assert min(result["text_tokenized_examples_per_second"].values()) > 0 and result["train_step_seconds"]["held"] > 0


def test_vision_benchmark_trains_the_same_resnet50_in_garden_keras_hub_and_model_garden():
    printed = [json.loads(line) for line in quick("vision.py").splitlines() if line.startswith("{")]
    systems = [row for row in printed if "system" in row]
    assert len(systems) == 3 and not any("error" in row for row in systems), systems
    assert len({row["batches"] for row in systems}) == 1  # the same batches
    assert len({row["trainable_weights"] for row in systems}) == 1  # the same network
    assert all(0 < row["fraction_of_matmul_peak"] < 1 for row in systems)
    assert printed[-1]["ratio_garden_to_fastest_peer"] > 0


def test_decoder_benchmark_generates_keras_hubs_tokens_with_gpt2():
    printed = quick("decoder_peers.py")
    assert "tokens that agree: 1.000" in printed, printed  # the same greedy tokens as KerasHub's GPT2CausalLM
    assert len(re.findall(r"^(garden|keras_hub) +[\d.]+ tokens/s$", printed, re.M)) == 2, printed
    assert re.search(r"^ratio garden / keras_hub: +[\d.]+x$", printed, re.M), printed
