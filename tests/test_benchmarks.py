"""The benchmarks run end to end in --quick mode, and the figures each prints agree with one another
as they must on any machine: a ratio is the quotient of the two printed figures it is made of, a
rate is the batch over the printed step time, a fraction of peak is the printed rate over the printed
peak, and the systems compared read the same batches and train the same network. Speeds themselves
are measured, not asserted. A printed figure stands for every value that prints as it (`Printed`),
so the checks hold whatever the rounding."""

import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT


class Printed:
    """The interval of the values that print as `text` ("12.3", "+4.5%", "1.20x"): ± half its last digit."""

    def __init__(self, text, low=None, high=None):
        if low is not None:
            self.low, self.high = low, high
            return
        text = str(text).strip().removesuffix("x")
        scale = 0.01 if text.endswith("%") else 1.0
        mantissa, _, exponent = text.removesuffix("%").lower().partition("e")
        half = 0.5 * 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))
        value = float(mantissa) * 10.0 ** int(exponent or 0)
        self.low, self.high = scale * (value - half), scale * (value + half)

    def __mul__(self, other):
        other = other if isinstance(other, Printed) else Printed(None, other, other)
        products = [a * b for a in (self.low, self.high) for b in (other.low, other.high)]
        return Printed(None, min(products), max(products))

    __rmul__ = __mul__

    def __truediv__(self, other):
        other = other if isinstance(other, Printed) else Printed(None, other, other)
        if other.low <= 0:  # a denominator that may be 0 as printed: any quotient
            return Printed(None, float("-inf"), float("inf"))
        return self * Printed(None, 1 / other.high, 1 / other.low)

    def __rtruediv__(self, other):
        return Printed(None, other, other) / self

    def __sub__(self, number):
        return Printed(None, self.low - number, self.high - number)

    def agrees(self, other) -> bool:
        """Whether some value prints as both: the intervals overlap."""
        return self.low <= other.high and other.low <= self.high

    def __repr__(self):
        return f"[{self.low:.6g}, {self.high:.6g}]"


def least(values):
    """The interval of the smallest of several printed values."""
    return Printed(None, min(v.low for v in values), min(v.high for v in values))


def agree(printed, computed, what):
    assert printed.agrees(computed), f"{what}: printed {printed}, its parts give {computed}"


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


def as_printed(text):
    """A printed JSON document with its numbers (ints too) as `Printed`."""
    return json.loads(text, parse_float=Printed, parse_int=Printed)


def json_lines(printed):
    """The printed one-line JSON objects, as `as_printed` reads them."""
    return [as_printed(line) for line in printed.splitlines() if line.startswith("{")]


def test_roofline_and_input_pipeline_benchmark_prints_figures_that_agree():
    printed = quick("training.py")
    number = r"([+-]?[\d.]+)"
    peak = Printed(re.search(rf"matmul peak \(float32, \d+\^3\): +{number} GFLOP/s", printed).group(1))
    steps = {
        kind: tuple(
            map(Printed, re.search(rf"training step, {kind}: +{number} ms +{number} GFLOP/s", printed).groups())
        )
        for kind in ("real tf.data input", "batch in memory")
    }
    (real_ms, real_rate), (memory_ms, memory_rate) = steps.values()
    fraction = Printed(re.search(rf"fraction of matmul peak \(real input\): +{number}%", printed).group(1) + "%")
    overhead = Printed(re.search(rf"input pipeline overhead .*: +{number}%", printed).group(1) + "%")
    keras, fused, ratio = map(
        Printed,
        re.search(
            rf"AdamW update of these weights, Keras vs Garden \(fused\): {number} ms vs {number} ms \({number}x\)",
            printed,
        ).groups(),
    )
    agree(real_rate * real_ms, memory_rate * memory_ms, "FLOPs of a step (rate x time), real input vs in memory")
    agree(fraction, real_rate / peak, "fraction of matmul peak")
    agree(overhead, real_ms / memory_ms - 1, "input pipeline overhead")
    agree(ratio, keras / fused, "AdamW Keras / fused")
    assert "best of 1 rounds of 10 steps" in printed, printed


@pytest.mark.parametrize("experiment", ["r8_student", "r8_minilm"])  # [CLS] pooler; mean pooling
def test_peer_benchmark_trains_the_same_bert_in_garden_keras_hub_and_model_garden(experiment):
    printed = quick("peers.py", "--experiment", experiment)
    header = re.search(rf"^{experiment}: BERT 1 layers, .* batch (\d+), ", printed, re.M)
    assert header, printed
    batch = int(header.group(1))
    rows = re.findall(r"^(.+?) +([\d.]+) ms/step +([\d.]+) examples/s  batches ([0-9a-f]{16})$", printed, re.M)
    assert len(rows) == 6, printed
    assert len({read for *_, read in rows}) == 1, printed  # Garden's trainer and the peers read the same batches
    ms = {name: Printed(step) for name, step, _, _ in rows}
    for name, _, rate, _ in rows:  # examples a step (the batch) over its time
        agree(Printed(rate), batch / (ms[name] / 1000), f"{name} examples/s")
    peer = least([step for name, step in ms.items() if not name.startswith("Garden")])
    ratios = dict(re.findall(r"^ratio Garden \((padded, best|default)\) / fastest peer: +([\d.]+)x$", printed, re.M))
    padded = least([ms["Garden (padded)"], ms["Garden (padded, XLA)"]])
    agree(Printed(ratios["padded, best"]), peer / padded, "ratio Garden (padded, best)")
    agree(Printed(ratios["default"]), peer / ms["Garden (default: padding-free)"], "ratio Garden (default)")


def test_streaming_benchmark_compares_garden_and_model_garden_on_the_same_shards():
    printed = quick("streaming.py")
    records, gigabytes = re.search(r"^wrote (\d+) JPEG records, ([\d.]+) GB in 16 shards", printed, re.M).groups()
    result = as_printed(printed[printed.index("\n{") :])  # the summary closes the output
    assert result["records"].agrees(Printed(records)) and result["gigabytes"].agrees(Printed(gigabytes))
    rates = result["images_per_second"]
    assert set(rates) == {"garden", "model_garden"}
    agree(result["garden_vs_model_garden"], rates["garden"] / rates["model_garden"], "garden / model_garden")
    step = result["train_step_seconds"]
    agree(result["input_pipeline_overhead"], step["stream"] / step["held"] - 1, "input pipeline overhead")
    text = result["text_tokenized_examples_per_second"]
    agree(result["text_streamed_vs_in_memory"], text["streamed"] / text["in_memory"], "text streamed / in memory")
    held = min(int(records), 64)  # --quick holds at most 64 images decoded
    assert set(result["peak_rss_above_baseline_mb"]) == {
        f"stream ({records} images, {gigabytes} GB)",
        f"in memory ({held} images decoded)",
    }
    assert all(mb.high >= 0 for mb in result["peak_rss_above_baseline_mb"].values())  # above the baseline


def test_vision_benchmark_trains_the_same_resnet50_in_garden_keras_hub_and_model_garden():
    setup, *systems, summary = json_lines(quick("vision.py"))
    assert len(systems) == 3 and not any("error" in row for row in systems), systems
    assert len({row["batches"] for row in systems}) == 1  # the same batches
    assert len({row["trainable_weights"].low for row in systems}) == 1  # the same network
    batch, steps, loop = (int(setup[key].low + 0.5) for key in ("batch", "steps", "steps_per_loop"))
    assert setup["timed_loops"].agrees(Printed(steps // loop - 1))  # the first loop traces
    agree(setup["training_gflops_per_step"], 3 * setup["forward_gflops_per_image"] * batch, "training GFLOPs a step")
    for row in systems:
        seconds = row["ms_per_step"] / 1000
        agree(row["images_per_second"], batch / seconds, f"{row['system']} images/s")
        rate = setup["training_gflops_per_step"] / seconds
        agree(row["training_gflops_per_second"], rate, f"{row['system']} GFLOP/s")
        fraction = row["training_gflops_per_second"] / setup["matmul_peak_gflops_per_second"]
        agree(row["fraction_of_matmul_peak"], fraction, f"{row['system']} fraction of peak")
    garden, *peers = systems
    (fastest,) = [row for row in peers if row["system"] == summary["fastest_peer"]]
    assert all(fastest["images_per_second"].high >= row["images_per_second"].low for row in peers)
    ratio = garden["images_per_second"] / fastest["images_per_second"]
    agree(summary["ratio_garden_to_fastest_peer"], ratio, "ratio Garden / fastest peer")
    ceiling = summary["ratio_garden_to_fastest_peer"] / garden["convolution_share_of_op_time"]
    agree(summary["ratio_ceiling_with_these_convolution_kernels"], ceiling, "ratio ceiling")


def test_decoder_benchmark_generates_keras_hubs_tokens_with_gpt2():
    printed = quick("decoder_peers.py")
    assert "tokens that agree: 1.000" in printed, printed  # the same greedy tokens as KerasHub's GPT2CausalLM
    size, batch, tokens = re.search(
        r"^GPT-2 ([\d.]+)M weights, (\d+) prompts x \d+ tokens, (\d+) new", printed, re.M
    ).groups()
    rates = {
        name: Printed(rate) for name, rate in re.findall(r"^(garden|keras_hub) +([\d.]+) tokens/s$", printed, re.M)
    }
    assert set(rates) == {"garden", "keras_hub"}, printed
    ratio = re.search(r"^ratio garden / keras_hub: +([\d.]+)x$", printed, re.M).group(1)
    agree(Printed(ratio), rates["garden"] / rates["keras_hub"], "ratio garden / keras_hub")
    step, floor, bandwidth = re.search(
        r"^garden ms per decode step: ([\d.]+); one matmul over the same bytes: ([\d.]+) ms \(([\d.]+) GB/s\)$",
        printed,
        re.M,
    ).groups()
    # a decode step gives each of the batch's rows one token: its time is the batch over the rate
    agree(Printed(step), 1000 * int(batch) / rates["garden"], "ms per decode step")
    assert int(tokens) > 0
    agree(Printed(bandwidth), 4 * Printed(size) / Printed(floor), "GB/s of the matmul over the weights' float32 bytes")
