"""Where a Garden training step's time goes on this CPU: achieved FLOP/s as a fraction of the
machine's matmul peak, and the input pipeline's share of the step.

Measured in one run: the peak (a 4096 x 4096 float32 matmul in TensorFlow on all cores, best of
several seconds); then Garden's trainer on the same BERT classifier twice, alternating, fed by the
real tf.data pipeline (tokenized Reuters R8 gathered, packed and prefetched) and by one batch
held in memory. A step's FLOPs follow PaLM's count per token: 6 x the non-embedding weights
(forward and backward) + 12 x layers x width x sequence (attention), over the padded tokens.
Last, one AdamW update of the model's weights by Keras's optimizer and by Garden's fused one.

    python benchmarks/training.py [--steps 300] [--set task.model.backbone.params.num_layers=2] [--quick]
"""

import argparse
import hashlib
import json
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from garden import optimizers, registry
from garden.resolve import experiment_config
from garden.train import trainer as trainer_module
from garden.train.strategy import resolve_strategy

TINY = [
    "task.model.backbone.params.num_layers=1",
    "task.model.backbone.params.num_heads=2",
    "task.model.backbone.params.hidden_dim=64",
    "task.model.backbone.params.intermediate_dim=128",
    "task.model.tokenizer.sequence_length=32",
    "task.init_checkpoint=''",  # r8_minilm's weights do not fit these sizes
    "task.model.tokenizer.vocabulary=all_minilm_l6_v2",
]  # --quick: proves the script runs
QUICK_PEAK_SIZE = 1024  # --quick: a 1024^3 matmul takes milliseconds, a 4096^3 one seconds on 2 cores
BERT_SMALL = [
    "task.model.backbone.params.num_layers=4",
    "task.model.backbone.params.num_heads=8",
    "task.model.backbone.params.hidden_dim=512",
    "task.model.backbone.params.intermediate_dim=2048",
]


def benchmark_sets(steps, loop, quick, sizes=BERT_SMALL):
    """Config overrides for `steps` training steps of BERT-small (or `sizes`; TINY when `quick`), `loop`
    steps a call."""
    return [
        *sizes,
        f"trainer.train_steps={steps}",
        f"trainer.steps_per_loop={loop}",
        f"trainer.checkpoint_interval={steps}",
        f"trainer.validation_interval={steps}",
        "task.validation_data.dataset=''",  # no validation: only training steps are timed
        *(TINY if quick else []),
    ]


def matmul_peak(size=4096, seconds=5.0, dtype="float32"):
    """FLOP/s of a large matmul of `dtype` on all cores (or the GPU)."""
    a, b = tf.random.normal([size, size], dtype=dtype), tf.random.normal([size, size], dtype=dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    product().numpy()
    best, began = float("inf"), time.perf_counter()
    while time.perf_counter() - began < seconds:
        start = time.perf_counter()
        product().numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def optimizer_step_seconds(optimizer_class, shapes, rounds):
    """Best seconds of one clipped, weight-decayed AdamW update of float32 weights of `shapes`."""
    weights = [keras.Variable(tf.random.normal(shape, stddev=0.02)) for shape in shapes]
    gradients = [tf.random.normal(shape, stddev=1e-3) for shape in shapes]
    optimizer = optimizer_class(learning_rate=1e-3, weight_decay=0.01, global_clipnorm=1.0)
    update = tf.function(lambda: optimizer.apply_gradients(zip(gradients, weights)))
    update()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        update()
        weights[0].numpy()
        best = min(best, time.perf_counter() - start)
    return best


def flops_per_step(config, model):
    """PaLM's training FLOPs of one global batch: (6 N + 12 L d s) per (padded) token."""
    params = config.task.model.backbone.params
    sequence = config.task.model.tokenizer.sequence_length
    embedding = sum(int(np.prod(v.shape)) for v in model.trainable_variables if "embedding" in v.path)
    weights = sum(int(np.prod(v.shape)) for v in model.trainable_variables) - embedding
    per_token = 6 * weights + 12 * params.num_layers * params.hidden_dim * sequence
    return per_token * sequence * config.task.train_data.global_batch_size


def batches_fingerprint(dataset, steps):
    """sha256 (16 hex digits) of the first `steps` batches of `dataset`: two systems read the same
    batches iff their fingerprints are equal."""
    digest = hashlib.sha256()
    for batch in dataset.take(steps):
        for tensor in tf.nest.flatten(batch):
            digest.update(np.ascontiguousarray(tensor.numpy()).tobytes())
    return digest.hexdigest()[:16]


def step_seconds(config, strategy, in_memory):
    """Median seconds per training step over the loops after the first (which traces), the model,
    and the dataset the trainer read."""
    real, built = trainer_module.train_dataset, []

    def recorded(*args, **kwargs):
        dataset = real(*args, **kwargs)
        if in_memory:  # the same first batch, prepared once and repeated
            dataset = dataset.take(1).cache().repeat()
        built.append(dataset)
        return dataset

    trainer_module.train_dataset = recorded
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = trainer_module.Trainer(config, run_dir, strategy)
            trainer.train()
            rows = [line for line in open(os.path.join(run_dir, "metrics.jsonl")) if '"train"' in line]
    finally:
        trainer_module.train_dataset = real
    rates = [json.loads(row)["examples_per_second"] for row in rows[1:]]
    seconds = config.task.train_data.global_batch_size / float(np.median(rates))
    return seconds, trainer.model, built[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="r8_student")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--set", action="append", default=[], help="config overrides after the BERT-small ones")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny model, 10 steps, one round, a 1024^3 peak: proves the script works"
    )
    args = parser.parse_args()
    registry.load_all()
    steps, loop, rounds = (10, 5, 1) if args.quick else (args.steps, 50, 2)
    size = QUICK_PEAK_SIZE if args.quick else 4096
    config = experiment_config(args.experiment, sets=[*benchmark_sets(steps, loop, args.quick), *args.set])
    strategy = resolve_strategy(config.runtime)
    peak = matmul_peak(size, seconds=1.0 if args.quick else 5.0)
    seconds = {True: [], False: []}
    for _ in range(rounds):
        for in_memory in (False, True):
            elapsed, model, _ = step_seconds(config, strategy, in_memory)
            seconds[in_memory].append(elapsed)
    real, memory = min(seconds[False]), min(seconds[True])
    shapes = [v.shape for v in model.trainable_variables]
    updates = {cls: [] for cls in (keras.optimizers.AdamW, optimizers.AdamW)}
    for _ in range(rounds):
        for cls, times in updates.items():
            times.append(optimizer_step_seconds(cls, shapes, 3 if args.quick else 10))
    keras_update, fused_update = (min(times) for times in updates.values())
    flops = flops_per_step(config, model)
    backbone = config.task.model.backbone.params
    print(
        f"{args.experiment}: BERT {backbone.num_layers} layers, width {backbone.hidden_dim}, sequence "
        f"{config.task.model.tokenizer.sequence_length}, batch {config.task.train_data.global_batch_size}; "
        f"{os.cpu_count()} CPU cores; best of {rounds} rounds of {steps} steps"
    )
    print(f"matmul peak (float32, {size}^3):     {peak / 1e9:8.1f} GFLOP/s")
    print(f"training step, real tf.data input: {1000 * real:8.1f} ms  {flops / real / 1e9:8.1f} GFLOP/s")
    print(f"training step, batch in memory:    {1000 * memory:8.1f} ms  {flops / memory / 1e9:8.1f} GFLOP/s")
    print(f"fraction of matmul peak (real input): {flops / real / peak:6.1%}")
    print(f"input pipeline overhead (real / in memory - 1): {real / memory - 1:+6.1%}")
    print(
        f"AdamW update of these weights, Keras vs Garden (fused): {1000 * keras_update:.1f} ms vs "
        f"{1000 * fused_update:.1f} ms ({keras_update / fused_update:.2f}x)"
    )


if __name__ == "__main__":
    main()
