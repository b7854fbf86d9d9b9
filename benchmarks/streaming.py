"""Garden's streamed images vs Model Garden's InputReader, and the memory a stream holds.

Writes JPEG TFRecord shards of random 256x256-400x400 images (deleted after), then in one run:
1. throughput: decoded, augmented (random resized crop, flip, resize) 224x224 images per second,
   Garden's pipeline vs Model Garden's `InputReader` with its classification `Parser`, on the same
   files, batch and augmentation, alternating rounds (the best of each is kept);
2. memory: the peak RSS above its baseline of a process that streams one epoch of the whole set
   (Garden's stream), beside a process that holds a subset decoded in memory (Garden's in-memory
   path, as for MNIST), each in its own subprocess;
3. training: Garden's trainer on image_classifier's ResNet at 224x224, fed by the stream vs by one
   batch held in memory: the input pipeline's share of a step;
4. text: tokenized examples per second of sst2_bert_small's pipeline over a 200k-line TSV file held
   in memory vs streamed line by line.

    python benchmarks/streaming.py [--gigabytes 2] [--quick]
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from garden import registry
from garden.data.convert import shard_paths
from garden.data.examples import Examples
from garden.data.pipeline import train_dataset
from garden.registry import TASKS
from garden.resolve import experiment_config

BATCH = 64
SHARDS = 16
QUICK_MODEL = [  # --quick trains a small ResNet on the stream's images resized to 64x64
    "task.model.backbone.params.stage_widths=[16, 32]",
    "task.model.backbone.params.blocks_per_stage=1",
    "task.model.backbone.params.image_shape=[64, 64, 3]",
]


def write_shards(folder, gigabytes, seed=0):
    """JPEG TFRecord shards of noisy images (noise keeps JPEGs large) until `gigabytes` are written."""
    rng = np.random.default_rng(seed)
    paths = shard_paths(os.path.join(folder, "train-*.tfrecord"), SHARDS)
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    written, count = 0, 0
    while written < gigabytes * 1e9:
        height, width = rng.integers(256, 400, size=2)
        smooth = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
        image = tf.image.resize(smooth, (height, width)).numpy() + rng.normal(0, 24, (height, width, 3))
        data = tf.io.encode_jpeg(np.clip(image, 0, 255).astype(np.uint8), quality=90).numpy()
        feature = {
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
            "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[count % 10])),
        }
        record = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
        writers[count % SHARDS].write(record)
        written, count = written + len(record), count + 1
    for writer in writers:
        writer.close()
    return f"{folder}/train-*", count


def garden_images(pattern):
    config = experiment_config("image_classifier", sets=[f"task.train_data.input_path={pattern}"])
    task = TASKS.get(config.task.type)(config.task)
    stream = task.load(config.task.train_data)
    return train_dataset(stream, BATCH, seed=0).map(lambda features, labels: (features["image"], labels)), config


def model_garden_images(pattern, config):
    from official.core import input_reader
    from official.vision.configs import image_classification as mg_config
    from official.vision.dataloaders import classification_input

    data = config.task.train_data
    params = mg_config.DataConfig(
        input_path=pattern,
        global_batch_size=BATCH,
        is_training=True,
        shuffle_buffer_size=data.shuffle_buffer_size,
        cycle_length=8,
        seed=0,
    )
    parser = classification_input.Parser(output_size=[224, 224], num_classes=10, aug_rand_hflip=True, aug_crop=True)
    reader = input_reader.InputReader(
        params,
        dataset_fn=tf.data.TFRecordDataset,
        decoder_fn=classification_input.Decoder().decode,
        parser_fn=parser.parse_fn(True),
    )
    return reader.read()


def images_per_second(dataset, batches, warmup=5):
    iterator = iter(dataset)
    for _ in range(warmup):  # warm up: fill the shuffle buffer and the autotuner
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        images, _ = next(iterator)
    assert images.shape[1:] == (224, 224, 3), images.shape
    return batches * BATCH / (time.perf_counter() - start)


def _rss_mb(field):
    """VmRSS (now) or VmHWM (the peak since the last reset) of this process, in MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def peak_rss_above_baseline(mode, pattern, count):
    """Run in a subprocess: MB of peak RSS above the RSS before reading, for one epoch of `mode`."""
    registry.load_all()
    config = experiment_config("image_classifier", sets=[f"task.train_data.input_path={pattern}"])
    task = TASKS.get(config.task.type)(config.task)
    stream = task.load(config.task.train_data)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current RSS
    baseline = _rss_mb("VmRSS")
    if mode == "stream":
        dataset = train_dataset(stream, BATCH, seed=0).take(count // BATCH)
    else:  # decoded into memory first, as an in-memory dataset holds its examples
        held = stream.to_examples(count)
        dataset = train_dataset(Examples(held.features, held.labels, held.label_names), BATCH, seed=0)
        dataset = dataset.take(count // BATCH)
    for _ in dataset:
        pass
    return _rss_mb("VmHWM") - baseline


def measure_in_subprocess(mode, pattern, count):
    command = [sys.executable, __file__, "--rss", mode, "--pattern", pattern, "--count", str(count)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def training_seconds(pattern, steps, held, quick):
    """Seconds per step of Garden's trainer on the image_classifier, fed by the stream or one held batch."""
    from garden.train import trainer as trainer_module
    from garden.train.strategy import resolve_strategy

    overrides = [
        f"task.train_data.input_path={pattern}",
        f"task.train_data.global_batch_size={BATCH // 2}",
        *(QUICK_MODEL if quick else []),
        f"trainer.train_steps={steps}",
        f"trainer.steps_per_loop={steps // 2}",
        f"trainer.checkpoint_interval={steps}",
        f"trainer.validation_interval={steps}",
    ]
    config = experiment_config("image_classifier", sets=overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = trainer_module.Trainer(config, run_dir, resolve_strategy(config.runtime))
        trainer.set_up()
        if held:  # one batch, repeated: the step without its input pipeline
            routine = trainer.routines[0]
            batch = next(iter(routine.iterator))
            routine.iterator = iter(
                trainer.strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).repeat())
            )
        trainer._loop(0)  # compile
        start = time.perf_counter()
        trainer._loop(steps // 2)
        return (time.perf_counter() - start) / (steps // 2)


def text_examples_per_second(folder, count, batches, rounds):
    """Tokenized examples/s of sst2_bert_small's pipeline over one TSV file of `count` sentences, held
    in memory vs streamed line by line (alternating rounds, best kept)."""
    rng = np.random.default_rng(0)
    words = np.array("the a good bad film plot actor great dull scene story ending was very not".split())
    path = os.path.join(folder, "sentences.tsv")
    with open(path, "w") as f:
        f.write("sentence\tlabel\n")
        for _ in range(count):
            f.write(" ".join(rng.choice(words, size=rng.integers(5, 40))) + f"\t{rng.integers(2)}\n")
    config = experiment_config("sst2_bert_small", sets=[f"task.train_data.input_path={path}"])
    task = TASKS.get(config.task.type)(config.task)
    datasets = {
        name: train_dataset(
            task.load(config.task.train_data.replace(in_memory_limit=limit)), BATCH, 0, prepare=task.prepare
        )
        for name, limit in (("in_memory", 1 << 40), ("streamed", 0))
    }
    rates = {name: [] for name in datasets}
    iterators = {name: iter(dataset) for name, dataset in datasets.items()}
    for _ in range(rounds):
        for name, iterator in iterators.items():
            next(iterator)
            start = time.perf_counter()
            for _ in range(batches):
                next(iterator)
            rates[name].append(batches * BATCH / (time.perf_counter() - start))
    return {name: max(values) for name, values in rates.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument(
        "--quick", action="store_true", help="a small set, few batches, a small model at 64x64: proves the script runs"
    )
    parser.add_argument("--rss", choices=["stream", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--pattern", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss:
        print(peak_rss_above_baseline(args.rss, args.pattern, args.count))
        return
    if args.quick:
        args.gigabytes, args.rounds, args.batches = 0.02, 1, 3
    registry.load_all()
    folder = tempfile.mkdtemp(prefix="garden-streaming-")
    try:
        start = time.perf_counter()
        pattern, count = write_shards(folder, args.gigabytes)
        size = sum(os.path.getsize(p) for p in glob.glob(pattern)) / 1e9
        print(f"wrote {count} JPEG records, {size:.2f} GB in {SHARDS} shards ({time.perf_counter() - start:.0f} s)")
        garden, config = garden_images(pattern)
        peer = model_garden_images(pattern, config)
        rates = {"garden": [], "model_garden": []}
        warmup = 1 if args.quick else 5
        for _ in range(args.rounds):
            rates["garden"].append(images_per_second(garden, args.batches, warmup))
            rates["model_garden"].append(images_per_second(peer, args.batches, warmup))
        best = {name: max(values) for name, values in rates.items()}
        held = min(count, 1000 if not args.quick else 64)
        memory = {
            "stream_mb": measure_in_subprocess("stream", pattern, count),
            "in_memory_mb": measure_in_subprocess("memory", pattern, held),
        }
        text = text_examples_per_second(folder, 2000 if args.quick else 200_000, args.batches * 4, args.rounds)
        steps = 4 if args.quick else 20
        step = {k: training_seconds(pattern, steps, k == "held", args.quick) for k in ("stream", "held")}
        print(
            json.dumps(
                {
                    "records": count,
                    "gigabytes": round(size, 2),
                    "images_per_second": {k: round(v, 1) for k, v in best.items()},
                    "garden_vs_model_garden": round(best["garden"] / best["model_garden"], 3),
                    "peak_rss_above_baseline_mb": {
                        f"stream ({count} images, {size:.2f} GB)": round(memory["stream_mb"]),
                        f"in memory ({held} images decoded)": round(memory["in_memory_mb"]),
                    },
                    "train_step_seconds": {k: round(v, 4) for k, v in step.items()},
                    "input_pipeline_overhead": round(step["stream"] / step["held"] - 1, 3),
                    "text_tokenized_examples_per_second": {k: round(v) for k, v in text.items()},
                    "text_streamed_vs_in_memory": round(text["streamed"] / text["in_memory"], 3),
                },
                indent=1,
            )
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
