"""Training throughput of one BERT classifier in Garden vs its peers on this CPU, side by side.

The same model (KerasHub's BertBackbone, sequence 128, dropout 0.1, a dense layer to 8 classes),
the same tokenized Reuters R8 batches of 32 from Garden's pipeline, AdamW with weight decay 0.01
and global clip norm 1.0 (the experiment's schedule in Garden, a constant 1e-3 for the peers), one
process. `--experiment r8_student` (the default): BERT-small (4 layers, width 512, 8 heads) with
[CLS] pooler. `--experiment r8_minilm`: MiniLM's sizes (6 layers, width 384, 12 heads; Garden
starts from its weights, the peers from random ones) and mean pooling over the real tokens, which
the KerasHub peer computes on BertBackbone's sequence output as a KerasHub user writes it; Model
Garden's sentence-prediction model has no mean pooling and keeps its [CLS] pooler (one 384x384
dense layer on one row per example: under 0.1% of a step's FLOPs).

- Garden's trainer (`garden train r8_student`) at its defaults, which train padding-free (the same
  function, computed on the real tokens only, and the last layer at [CLS] only, the one position
  the classifier reads; the peers compute every position of every layer), and padded
  (`task.model.backbone.params.padding_free=false`), with and without `runtime.enable_xla`;
- `keras_hub.models.BertTextClassifier.fit`, as compiled by default (`jit_compile="auto"`, one
  step per call) and tuned (`jit_compile=True`, `steps_per_execution` = Garden's steps per loop);
- Model Garden's BERT sentence-prediction trainer (tf-models-official, tf_keras, Orbit).

`--precision bfloat16` runs all of them under mixed bfloat16 (Keras's and tf_keras's
`mixed_bfloat16` policy; Garden's `runtime.mixed_precision_dtype=bfloat16`), which this CPU's
AMX units compute several times faster than float32 matmuls.

Each figure is the median step time over the loops after the first (which traces); rounds
alternate between the systems and each keeps its best round.

    python benchmarks/peers.py [--experiment r8_student|r8_minilm] [--steps 100] [--rounds 2]
        [--precision float32|bfloat16] [--quick]
"""

import argparse
import os
import time

import keras
import keras_hub
import numpy as np
from model_garden_peer import model_garden_step_seconds
from training import BERT_SMALL, batches_fingerprint, benchmark_sets, step_seconds

from garden import registry
from garden.data.pipeline import train_dataset
from garden.registry import TASKS
from garden.resolve import experiment_config
from garden.train import precision as mixed_precision
from garden.train.strategy import resolve_strategy


class LoopTimer(keras.callbacks.Callback):
    """Seconds per `fit` epoch (one epoch = one loop of steps)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.began = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.began)


def keras_hub_classifier(backbone, num_classes, pooling):
    """KerasHub's BertTextClassifier ([CLS] pooler), or for `pooling="mean"` the masked mean of the
    backbone's sequence output, dropout and a dense layer, as a functional model."""
    if pooling == "cls":
        return keras_hub.models.BertTextClassifier(backbone, num_classes, preprocessor=None, dropout=0.1)
    inputs = backbone.input
    sequence = backbone(inputs)["sequence_output"]
    mask = keras.ops.expand_dims(keras.ops.cast(inputs["padding_mask"], sequence.dtype), -1)
    pooled = keras.ops.sum(sequence * mask, axis=1) / keras.ops.sum(mask, axis=1)
    logits = keras.layers.Dense(num_classes, dtype="float32")(keras.layers.Dropout(0.1)(pooled))
    return keras.Model(inputs, logits)


def keras_hub_step_seconds(dataset, config, num_classes, steps, loop, jit_compile, steps_per_execution):
    mixed_precision.set_policy(config.runtime.mixed_precision_dtype)
    params = config.task.model.backbone.params
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=params.vocabulary_size,
        num_layers=params.num_layers,
        num_heads=params.num_heads,
        hidden_dim=params.hidden_dim,
        intermediate_dim=params.intermediate_dim,
        dropout=params.dropout,
        max_sequence_length=params.max_sequence_length,
    )
    model = keras_hub_classifier(backbone, num_classes, params.pooling)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01, global_clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    timer = LoopTimer()
    model.fit(dataset, epochs=steps // loop, steps_per_epoch=loop, callbacks=[timer], verbose=0)
    return float(np.median(timer.seconds[1:])) / loop


def garden_step_seconds(config, strategy):
    """Garden's seconds per step and the fingerprint of the batches its trainer read."""
    seconds, _, dataset = step_seconds(config, strategy, in_memory=False)
    return seconds, batches_fingerprint(dataset, config.trainer.train_steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", choices=["r8_student", "r8_minilm"], default="r8_student")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny model, 10 steps, one round: proves the script works"
    )
    args = parser.parse_args()
    registry.load_all()
    steps, loop, rounds = (10, 5, 1) if args.quick else (args.steps, 20, args.rounds)
    sizes = BERT_SMALL if args.experiment == "r8_student" else []  # r8_minilm: MiniLM's own
    sets = [*benchmark_sets(steps, loop, args.quick, sizes), f"runtime.mixed_precision_dtype={args.precision}"]
    config = experiment_config(args.experiment, sets=sets)
    padded = experiment_config(args.experiment, sets=[*sets, "task.model.backbone.params.padding_free=false"])
    xla = experiment_config(args.experiment, sets=[*sets, "runtime.enable_xla=true"])  # trains padded
    strategy = resolve_strategy(config.runtime)
    task = TASKS.get(config.task.type)(config.task)
    examples = task.load(config.task.train_data)
    batch, sequence = config.task.train_data.global_batch_size, config.task.model.tokenizer.sequence_length
    seed = config.task.train_data.seed or config.runtime.seed  # the order Garden's trainer reads
    dataset = train_dataset(examples, batch, seed=seed, prepare=task.prepare)
    peers_read = batches_fingerprint(dataset, steps)  # each peer reads `dataset` from its start
    classes = len(examples.label_names)
    params = config.task.model.backbone.params
    systems = {
        "Garden (default: padding-free)": lambda: garden_step_seconds(config, strategy),
        "Garden (padded)": lambda: garden_step_seconds(padded, strategy),
        "Garden (padded, XLA)": lambda: garden_step_seconds(xla, strategy),
        "KerasHub fit (default compile)": lambda: (
            keras_hub_step_seconds(dataset, config, classes, steps, loop, "auto", 1),
            peers_read,
        ),
        f"KerasHub fit (XLA, {loop} steps per call)": lambda: (
            keras_hub_step_seconds(dataset, config, classes, steps, loop, True, loop),
            peers_read,
        ),
        "Model Garden sentence prediction (Orbit, tf_keras)": lambda: (
            model_garden_step_seconds(
                dataset,
                classes,
                params.vocabulary_size,
                params.num_layers,
                params.num_heads,
                params.hidden_dim,
                params.intermediate_dim,
                1e-3,
                steps,
                loop,
                args.precision,
            ),
            peers_read,
        ),
    }
    best, read = {name: float("inf") for name in systems}, {}
    for _ in range(rounds):
        for name, measure in systems.items():
            seconds, read[name] = measure()
            best[name] = min(best[name], seconds)
    print(
        f"{args.experiment}: BERT {params.num_layers} layers, width {params.hidden_dim}, {params.num_heads} heads, "
        f"{params.pooling} pooling, sequence {sequence}, "
        f"batch {batch}, Reuters R8, {args.precision}; {os.cpu_count()} CPU cores; "
        f"best of {rounds} rounds of {steps} steps; batches: sha256 of the {steps} batches each system read"
    )
    for name, seconds in best.items():
        print(f"{name:58s} {1000 * seconds:8.1f} ms/step {batch / seconds:8.1f} examples/s  batches {read[name]}")
    peer = min(seconds for name, seconds in best.items() if not name.startswith("Garden"))
    padded = min(best["Garden (padded)"], best["Garden (padded, XLA)"])
    print(f"ratio Garden (padded, best) / fastest peer: {peer / padded:5.2f}x")
    print(f"ratio Garden (default) / fastest peer: {peer / best['Garden (default: padding-free)']:5.2f}x")


if __name__ == "__main__":
    main()
