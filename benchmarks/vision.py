"""ResNet-50 training throughput (images/second) on this machine: Garden vs KerasHub vs Model Garden.

One process trains the same network three ways, one after the other, on the same input, and prints a
JSON line per system and the ratio of Garden's throughput to the fastest peer's:

- Garden's trainer (`garden.train.trainer.Trainer`, the registered experiment `image_classifier`
  with backbone `resnet_v1` depth 50, i.e. KerasHub's ResNetBackbone, average-pooled, and a dense
  head to 1000 classes);
- KerasHub: `keras_hub.models.ResNetImageClassifier` on a `ResNetBackbone` with the same
  architecture arguments (timm's resnet50 table), `.fit` after `compile(jit_compile=--xla)` (Keras's
  default "auto" is off on CPU-only machines; `steps_per_execution` 1; the classifier's default
  training metric, accuracy);
- Model Garden: `official.vision.tasks.image_classification.ImageClassificationTask` (its ResNet,
  model_id 50; tf_keras, Keras 2) run by `official.core.base_trainer.Trainer` (Orbit) on the default
  strategy; it also updates its default training metrics (accuracy, top-5).

The network is ResNet-50 v1.5 (7x7 stem, stride on the 3x3 convolutions) at 224x224x3 with random
weights; the trainable weight counts printed per system show the three are the same size. All train
with SGD, momentum 0.9, a constant learning rate of 0.1 x batch / 256 (Goyal et al., 2017) and sparse
categorical cross-entropy on logits, in float32 (or mixed bfloat16 / float16 with `--precision`), with
XLA off (all three jit-compile their training step with `--xla`; Model Garden's trainer does so on GPUs
only).

Input: in-memory random float tensors, not JPEG records, so that the model step is measured, not
decoding. `batch` random images in [0, 1] with random labels from 1000 classes are a Garden
catalog dataset registered here; Garden's in-memory pipeline batches them and, as
benchmarks/training.py does for "one batch held in memory", the first batch is cached and repeated.
The peers read that same pipeline (the sha256 fingerprints of the batches each system read match).

Steps run in loops of `--loop` (1 with --quick); each figure is the median step time over the loops after
the first (which traces): Garden's `examples_per_second` from the run's metrics.jsonl, KerasHub's
epoch wall times (an epoch = one loop), Model Garden's `trainer.train(steps_per_loop)` calls.

FLOPs: the forward pass of one image is counted from Garden's Keras model as 2 x the multiply-adds of
every Conv2D and Dense layer (output positions x kernel size; batch norm, ReLU, pooling and the
residual adds are left out): 8.18 GFLOPs at 224x224; a training step is 3 x forward x batch (393 GFLOPs
at batch 16).
The fraction of peak (MFU) is against the matmul peak that benchmarks/training.py measures (a
4096 x 4096 matmul on all cores, or the GPU) in the precision's compute dtype.

Where the time goes: TensorFlow's profiler records each system's op kernels during its run; the
share spent in convolutions (forward and both gradients: the same oneDNN or cuDNN kernels in all
three) bounds what any trainer on them can reach: Garden's step can shrink at most to its
convolutions' share of it, which gives the printed ceiling of the ratio.

    python benchmarks/vision.py [--batch 16] [--steps 10] [--loop 2] [--precision float32|bfloat16|float16]
                                [--xla] [--quick]
    bash benchmarks/vision_gpu.sh   # on a GPU: the three precisions, with and without XLA
"""

import argparse
import collections
import contextlib
import glob
import json
import os
import statistics
import tempfile

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras_hub.src.utils.timm.convert_resnet import convert_backbone_config
from model_garden_peer import orbit_step_seconds
from peers import LoopTimer
from tensorflow.python.framework import op_def_registry
from tensorflow.tsl.profiler.protobuf import xplane_pb2
from training import QUICK_PEAK_SIZE, batches_fingerprint, matmul_peak, step_seconds

from garden import registry
from garden.config import DataConfig
from garden.data.examples import Examples, as_int_labels
from garden.data.pipeline import train_dataset
from garden.registry import DATASETS, TASKS
from garden.resolve import experiment_config
from garden.train import precision as mixed_precision
from garden.train.strategy import resolve_strategy

NUM_CLASSES = 1000
DATASET = "vision_benchmark_random"  # registered by `register_random_images`
GARDEN = "Garden trainer"
KERAS_HUB = "KerasHub ResNetImageClassifier.fit"
MODEL_GARDEN = "Model Garden image classification (Orbit, tf_keras)"
CONVOLUTIONS = {"Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput"}
CALLS = {"PartitionedCall", "StatefulPartitionedCall", "While", "StatelessWhile", "If", "StatelessIf", "Case"}


def learning_rate(batch: int) -> float:
    """Goyal et al.'s linear scaling of ResNet-50's 0.1 at batch 256."""
    return 0.1 * batch / 256


def register_random_images(batch: int, size: int, seed: int = 0) -> None:
    """Registers DATASET: `batch` random images [size, size, 3] in [0, 1], random labels of NUM_CLASSES."""
    rng = np.random.default_rng(seed)
    images = rng.random((batch, size, size, 3), dtype=np.float32)
    labels = as_int_labels(rng.integers(0, NUM_CLASSES, batch))
    examples = Examples({"image": images}, labels, [str(i) for i in range(NUM_CLASSES)])
    DATASETS.register(DATASET)(lambda config, label_names=None: examples)


def garden_sets(batch: int, size: int, steps: int, loop: int, precision: str, xla: bool, depth: int) -> list[str]:
    """Overrides of `image_classifier`: ResNet of `depth` on DATASET, SGD with momentum, no validation."""
    return [
        "task.model.backbone.type=resnet_v1",
        f"task.model.backbone.params.depth={depth}",
        f"task.model.backbone.params.image_shape=[{size}, {size}, 3]",
        f"task.model.head.params.num_classes={NUM_CLASSES}",
        f"task.train_data.dataset={DATASET}",
        f"task.train_data.global_batch_size={batch}",
        "task.train_data.aug_crop=false",  # the stream options of image_classifier do not apply in memory
        "task.train_data.aug_rand_hflip=false",
        f"task.train_data.shuffle_buffer_size={DataConfig().shuffle_buffer_size}",
        "task.validation_data.dataset=''",  # no validation: only training steps are timed
        "trainer.optimizer_config.optimizer.type=sgd",
        "trainer.optimizer_config.optimizer.sgd.momentum=0.9",
        "trainer.optimizer_config.learning_rate.type=constant",
        f"trainer.optimizer_config.learning_rate.constant.learning_rate={learning_rate(batch)}",
        "trainer.optimizer_config.warmup.type=null",
        f"trainer.train_steps={steps}",
        f"trainer.steps_per_loop={loop}",
        f"trainer.checkpoint_interval={steps}",
        f"trainer.validation_interval={steps}",
        f"runtime.mixed_precision_dtype={precision}",
        f"runtime.enable_xla={xla}",
    ]


def peer_dataset(config) -> tf.data.Dataset:
    """(images, labels): the batch Garden's trainer reads (its pipeline, seed and cached first batch)."""
    task = TASKS.get(config.task.type)(config.task)
    examples, prepare = task.load_train()
    seed = config.task.train_data.seed or config.runtime.seed
    batches = train_dataset(examples, config.task.train_data.global_batch_size, seed, prepare=prepare)
    return batches.take(1).cache().repeat().map(lambda features, labels: (features["image"], labels))


def forward_flops(model) -> int:
    """Forward FLOPs of one example: 2 x multiply-adds of each Conv2D (output positions x kernel
    size, channels last) and Dense layer (kernel size) of a Keras 3 model."""
    total = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D):
            total += 2 * int(np.prod(layer.output.shape[1:-1])) * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * int(np.prod(layer.kernel.shape))
    return total


def trainable_weights(model) -> int:
    """The trainable weight count of a Keras 3 or tf_keras model."""
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def garden_seconds(config, strategy, steps: int):
    """Garden's median seconds per step, its model and the fingerprint of the batches it read."""
    seconds, model, dataset = step_seconds(config, strategy, in_memory=True)
    return seconds, model, batches_fingerprint(dataset, steps)


def keras_hub_seconds(dataset, size: int, batch: int, steps: int, loop: int, precision: str, xla: bool, depth: int):
    """KerasHub's median seconds per step over the epochs (of `loop` steps) after the first, and its model."""
    mixed_precision.set_policy(precision)
    backbone = keras_hub.models.ResNetBackbone(
        **convert_backbone_config({"architecture": f"resnet{depth}"}), image_shape=(size, size, 3)
    )
    model = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=NUM_CLASSES, preprocessor=None)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate(batch), momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=xla,
    )
    timer = LoopTimer()
    model.fit(dataset, epochs=steps // loop, steps_per_epoch=loop, callbacks=[timer], shuffle=False, verbose=0)
    return statistics.median(timer.seconds[1:]) / loop, model


def model_garden_seconds(dataset, size: int, batch: int, steps: int, loop: int, precision: str, xla: bool, depth: int):
    """Model Garden's median seconds per step over the `trainer.train(loop)` calls after the first, and
    its model: ImageClassificationTask (ResNet model_id 50, sparse labels) and the legacy tf_keras SGD
    that its optimizer factory builds for type "sgd", run by base_trainer.Trainer."""
    from official.modeling import performance
    from official.modeling.optimization.configs import optimization_config
    from official.vision.configs import backbones
    from official.vision.configs import image_classification as exp_cfg
    from official.vision.tasks import image_classification

    performance.set_mixed_precision_policy(precision)
    task_config = exp_cfg.ImageClassificationTask(
        model=exp_cfg.ImageClassificationModel(
            num_classes=NUM_CLASSES,
            input_size=[size, size, 3],
            backbone=backbones.Backbone(type="resnet", resnet=backbones.ResNet(model_id=depth)),
        ),
        losses=exp_cfg.Losses(one_hot=False),  # sparse cross-entropy, as the others
        train_data=exp_cfg.DataConfig(global_batch_size=batch),
    )
    optimization = optimization_config.OptimizationConfig(
        {
            "optimizer": {"type": "sgd", "sgd": {"momentum": 0.9}},
            "learning_rate": {"type": "constant", "constant": {"learning_rate": learning_rate(batch)}},
        }
    )
    task = image_classification.ImageClassificationTask(task_config)
    return orbit_step_seconds(task, optimization, dataset, steps, loop, precision, xla)


@contextlib.contextmanager
def op_seconds():
    """{op type: seconds its kernels ran} over the block, from TensorFlow's host profiler: the ops
    that graph executors ran on their threads, without the calls and loops that hold other ops, and
    oneDNN's `_MklNative`/`_Mkl` prefixes dropped, so that Conv2D is Conv2D on any build."""
    totals = collections.Counter()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            yield totals
        finally:
            tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
            with open(path, "rb") as file:
                space.ParseFromString(file.read())
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                op_type = plane.event_metadata[event.metadata_id].name.rpartition(":")[2]  # "node:OpType"
                if op_def_registry.get(op_type) is not None and op_type not in CALLS:
                    totals[op_type.removeprefix("_MklNative").removeprefix("_Mkl")] += event.duration_ps / 1e12


def convolution_share(totals) -> float:
    """The fraction of op time spent in convolutions, forward and backward."""
    return sum(totals[op] for op in CONVOLUTIONS) / sum(totals.values())


def report(name: str, seconds: float, batch: int, step_flops: float, peak: float, **extra) -> None:
    """Prints one system's JSON line."""
    row = {
        "system": name,
        "images_per_second": round(batch / seconds, 2),
        "ms_per_step": round(1000 * seconds, 1),
        "training_gflops_per_second": round(step_flops / seconds / 1e9, 1),
        "fraction_of_matmul_peak": round(step_flops / seconds / peak, 4),
        **extra,
    }
    print(json.dumps(row), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="images a step (16; 4 with --quick)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per system, in loops of 2")
    parser.add_argument("--loop", type=int, default=2, help="training steps per timed loop")
    parser.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--xla", action="store_true", help="jit-compile the training steps")
    parser.add_argument("--depth", type=int, choices=[18, 34, 50, 101, 152], default=50, help="ResNet depth")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="64x64 images, batches of 4, 2 steps, a 1024^3 peak: proves the script works",
    )
    args = parser.parse_args()
    size, steps, loop = (64, 2, 1) if args.quick else (224, args.steps, args.loop)
    args.batch = args.batch or (4 if args.quick else 16)
    depth = args.depth
    if steps % loop or steps < 2 * loop:
        parser.error(f"--steps must be an even number of at least {2 * loop} (loops of {loop}, the first untimed)")
    registry.load_all()
    register_random_images(args.batch, size)
    sets = garden_sets(args.batch, size, steps, loop, args.precision, args.xla, depth)
    config = experiment_config("image_classifier", sets=sets)
    strategy = resolve_strategy(config.runtime)
    peak = matmul_peak(QUICK_PEAK_SIZE if args.quick else 4096, 1.0 if args.quick else 5.0, args.precision)
    dataset = peer_dataset(config)
    peers_read = batches_fingerprint(dataset, steps)

    with op_seconds() as garden_ops:
        seconds, model, garden_read = garden_seconds(config, strategy, steps)
    flops = forward_flops(model)
    step_flops = 3 * flops * args.batch
    setup = {
        "benchmark": f"ResNet-{depth} training",
        "image_shape": [size, size, 3],
        "batch": args.batch,
        "precision": args.precision,
        "xla": args.xla,
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "steps": steps,
        "steps_per_loop": loop,
        "timed_loops": steps // loop - 1,
        "cpu_cores": os.cpu_count(),
        "matmul_peak_gflops_per_second": round(peak / 1e9, 1),
        "matmul_peak_dtype": args.precision,
        "forward_gflops_per_image": round(flops / 1e9, 3),
        "training_gflops_per_step": round(step_flops / 1e9, 2),
        "flops_counted": "2 x multiply-adds of Conv2D and Dense layers of Garden's model; training = 3 x forward",
        "input": "one in-memory batch of random images and labels, cached and repeated",
    }
    print(json.dumps(setup), flush=True)
    weights = trainable_weights(model)
    garden_convolutions = convolution_share(garden_ops)
    report(
        GARDEN,
        seconds,
        args.batch,
        step_flops,
        peak,
        trainable_weights=weights,
        batches=garden_read,
        convolution_share_of_op_time=round(garden_convolutions, 3),
    )
    garden, measured = seconds, {}
    peers = {
        KERAS_HUB: lambda: keras_hub_seconds(dataset, size, args.batch, steps, loop, args.precision, args.xla, depth),
        MODEL_GARDEN: lambda: model_garden_seconds(
            dataset, size, args.batch, steps, loop, args.precision, args.xla, depth
        ),
    }
    for name, measure in peers.items():
        try:
            with op_seconds() as peer_ops:
                seconds, model = measure()
        except Exception as error:  # a peer that cannot run is reported, and the others still are
            reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            print(json.dumps({"system": name, "error": f"{type(error).__name__}: {reason}"}), flush=True)
            continue
        extra = {
            "trainable_weights": trainable_weights(model),
            "batches": peers_read,
            "convolution_share_of_op_time": round(convolution_share(peer_ops), 3),
        }
        if name == KERAS_HUB:
            extra["jit_compile"] = bool(model.jit_compile)
        report(name, seconds, args.batch, step_flops, peak, **extra)
        measured[name] = seconds

    if not measured:
        print(json.dumps({"ratio_garden_to_fastest_peer": None, "reason": "no peer ran"}))
        return
    fastest = min(measured, key=measured.get)
    ratio = measured[fastest] / garden  # images/s of Garden over images/s of the fastest peer
    # Were everything but Garden's convolutions free, its step would take seconds x that share:
    ceiling = measured[fastest] / (garden * garden_convolutions)
    print(
        json.dumps(
            {
                "ratio_garden_to_fastest_peer": round(ratio, 3),
                "fastest_peer": fastest,
                "ratio_ceiling_with_these_convolution_kernels": round(ceiling, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
