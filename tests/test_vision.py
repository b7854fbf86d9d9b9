"""KerasHub image backbones in Garden: every family against KerasHub's own model, the generic type,
warm starts, freezing, the backbone's learning-rate multiplier, class subsets and RGB image exports."""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import garden, mnist_pixels, trained_once
from PIL import Image

from garden.data.mnist import mnist
from garden.errors import GardenError
from garden.export.keras_hub_preset import keras_hub_model
from garden.models.backbones.keras_hub import _depthwise_op
from garden.models.freezing import backbone_blocks
from garden.models.task_model import build_task_model
from garden.optimizers import scale_learning_rate
from garden.resolve import experiment_config
from garden.run import Run
from garden.train.strategy import resolve_strategy
from garden.train.trainer import Trainer
from garden.yaml_files import save_yaml

FAMILIES = [
    ("resnet_v1", ["depth=18"]),
    ("resnet_v2", ["depth=18"]),
    ("mobilenet_v3", ["variant=small_050"]),
    ("efficientnet", ["variant=b0"]),
    ("vit", ["size=tiny", "patch_size=8"]),
    ("cspnet", ["variant=resnet50"]),
]


def vision_config(backbone="mobilenet_v3", params=("variant=small_050",), *overrides, **files):
    """mnist_mobilenet_v3 with another backbone (32x32 RGB) and `overrides`."""
    sets = [f"task.model.backbone.type={backbone}", "task.model.backbone.params.image_shape=[32, 32, 3]"]
    sets += [f"task.model.backbone.params.{p}" for p in params]
    return experiment_config("mnist_mobilenet_v3", sets=[*sets, *overrides], **files)


def pooled_by_keras_hub(backbone, images):
    """The backbone's KerasHub class built on its own, given the backbone's weights, its input scaled
    and its output pooled by hand (mean over positions; a ViT's class token)."""
    hub = backbone.hub
    images = {"none": images, "unit": images * 2 - 1}[backbone.normalization]
    reference = getattr(keras_hub.models, backbone.class_name).from_config(hub.get_config())
    reference.set_weights(hub.get_weights())
    features = np.asarray(reference(images))
    return features[:, 0] if features.ndim == 3 else features.mean(axis=(1, 2))


@pytest.mark.parametrize("family,params", FAMILIES, ids=[f for f, _ in FAMILIES])
def test_each_family_is_keras_hubs_model_trains_and_round_trips(family, params, tmp_path):
    config = vision_config(family, params)
    model = build_task_model(config.task.model, "model")
    backbone = model.get_layer("backbone")
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(
        backbone({"image": images})["pooled_output"], pooled_by_keras_hub(backbone, images), atol=1e-5, rtol=1e-4
    )

    labels = np.arange(4) % 10
    optimizer = keras.optimizers.Adam(1e-3)
    losses = []
    for _ in range(4):
        with tf.GradientTape() as tape:
            logits = model({"image": images}, training=True)["logits"]
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        losses.append(float(loss))
    assert losses[-1] < losses[0]

    save_yaml(config, tmp_path / "config.yaml")
    again = experiment_config(config_files=[tmp_path / "config.yaml"])
    assert again.task.model.backbone.as_dict() == config.task.model.backbone.as_dict()
    rebuilt = type(backbone).from_config(backbone.get_config())
    rebuilt.set_weights(backbone.get_weights())
    np.testing.assert_array_equal(
        rebuilt({"image": images})["pooled_output"], backbone({"image": images})["pooled_output"]
    )


def test_generic_type_builds_any_image_backbone_and_names_mistakes():
    resnet = {
        "input_conv_filters": [64],
        "input_conv_kernel_sizes": [3],
        "stackwise_num_filters": [64, 128],
        "stackwise_num_blocks": [1, 1],
        "stackwise_num_strides": [1, 2],
        "block_type": "basic_block",
    }
    config = vision_config("keras_hub.ResNetBackbone", [f"{k}={json.dumps(v)}" for k, v in resnet.items()])
    backbone = build_task_model(config.task.model, "model").get_layer("backbone")
    assert backbone.hub.stackwise_num_filters == [64, 128] and backbone.output["pooled_output"].shape == (None, 128)

    shown = garden("show", "mnist_mobilenet_v3", "--set", "task.model.backbone.type=keras_hub.ResNetBackbone").stdout
    assert "stackwise_num_blocks: null" in shown and "use_pre_activation: false" in shown
    with pytest.raises(
        GardenError, match=r"unknown backbone 'keras_hub.ResnetBackbone'; did you mean 'keras_hub.ResNetBackbone'"
    ):
        vision_config("keras_hub.ResnetBackbone", [])
    with pytest.raises(GardenError, match="does not take images"):
        vision_config("keras_hub.BertBackbone", [])
    with pytest.raises(
        GardenError,
        match=r"unknown config key '.*params.stackwise_num_filter'; did you mean '.*params.stackwise_num_filters'",
    ):
        vision_config("keras_hub.ResNetBackbone", ["stackwise_num_filter=[1]"])
    with pytest.raises(GardenError, match="variant 'small_10' is not one of .*did you mean 'small_100'"):
        build_task_model(vision_config("mobilenet_v3", ["variant=small_10"]).task.model, "model")
    with pytest.raises(GardenError, match="needs input_conv_filters, input_conv_kernel_sizes, stackwise_num_filters"):
        build_task_model(vision_config("keras_hub.ResNetBackbone", []).task.model, "model")


def test_grouped_depthwise_convolutions_run_tensorflows_depthwise_kernel():
    """KerasHub's MobileNet writes depthwise convolutions as grouped Conv2D; Garden runs them as
    depthwise ones (16x faster to train on CPU): outputs and gradients equal KerasHub's own."""
    backbone = build_task_model(vision_config().task.model, "model").get_layer("backbone")
    grouped = [layer for layer in backbone.hub._flatten_layers() if getattr(layer, "groups", 1) > 1]
    assert grouped and all(layer.convolution_op.__func__ is _depthwise_op for layer in grouped)
    reference = keras_hub.models.MobileNetBackbone.from_config(backbone.hub.get_config())
    reference.set_weights(backbone.hub.get_weights())
    images = tf.constant(np.random.default_rng(1).random((4, 32, 32, 3), dtype=np.float32))
    direction = tf.constant(np.random.default_rng(2).normal(size=(4, 1, 1, 288)).astype(np.float32))

    def features_and_gradients(model):
        with tf.GradientTape() as tape:
            features = model(images, training=False)
            loss = tf.reduce_sum(features * direction)
        return features, tape.gradient(loss, model.trainable_weights)

    ours, our_gradients = features_and_gradients(backbone.hub)
    theirs, their_gradients = features_and_gradients(reference)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    for mine, expected in zip(our_gradients, their_gradients, strict=True):
        np.testing.assert_allclose(mine, expected, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def vision_run(tmp_path_factory, mnist_files):
    """MobileNetV3-Small-0.5 on 400 MNIST digits from TFRecord shards as 32x32 RGB, 20 steps."""
    shards = str(mnist_files[1] / "train-*.tfrecord")
    return trained_once(
        tmp_path_factory,
        "vision_tiny",
        "mnist_mobilenet_v3",
        "--set",
        "task.model.backbone.params.variant=small_050",
        *("--set", f"task.train_data.input_path={shards}", "--set", f"task.validation_data.input_path={shards}"),
        *("--set", f"task.test_data.input_path={shards}", "--set", "task.train_data.global_batch_size=32"),
        *("--set", "trainer.train_steps=20", "--set", "trainer.steps_per_loop=10"),
        *("--set", "trainer.checkpoint_interval=20", "--set", "trainer.validation_interval=20"),
        *("--set", "trainer.optimizer_config.warmup.linear.warmup_steps=5"),
    )


def backbone_after_warm_start(run_dir, init_checkpoint):
    """The backbone of a new run warm-started from `init_checkpoint`, at step 0 (set up, not trained)."""
    config = vision_config(
        "mobilenet_v3",
        ["variant=small_050"],
        f"task.init_checkpoint={init_checkpoint}",
        "task.validation_data.input_path=''",
    )
    trainer = Trainer(config, str(run_dir), resolve_strategy(config.runtime))
    trainer.task.warm_start(trainer.models)
    return trainer.model.get_layer("backbone"), trainer.model


def head_weights(model):
    """The weights of `model` outside its backbone, in order."""
    backbone = {id(w) for w in model.get_layer("backbone").weights}
    return [w.numpy() for w in model.weights if id(w) not in backbone]


def test_warm_starts_from_a_run_a_preset_and_a_weights_file(vision_run, tmp_path):
    """The backbone comes from the source; the head stays exactly as a run without a warm start
    (the same seed) initializes it, not the source run's trained head."""
    trained = Run(str(vision_run)).model
    source = trained.get_layer("backbone")
    backbone, model = backbone_after_warm_start(tmp_path / "from_run", str(vision_run))
    for ours, theirs in zip(backbone.weights, source.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    config = vision_config("mobilenet_v3", ["variant=small_050"], "task.validation_data.input_path=''")
    fresh = Trainer(config, str(tmp_path / "fresh"), resolve_strategy(config.runtime)).model
    for ours, initialized, theirs in zip(head_weights(model), head_weights(fresh), head_weights(trained), strict=True):
        np.testing.assert_array_equal(ours, initialized)
        assert not np.array_equal(ours, theirs)  # the trained head is not taken

    other = build_task_model(vision_config().task.model, "other").get_layer("backbone")  # other random weights
    other.hub.save_to_preset(str(tmp_path / "preset"))
    other.save_weights(str(tmp_path / "garden_backbone.weights.h5"))
    other.hub.save_weights(str(tmp_path / "keras_hub_backbone.weights.h5"))
    for source_path in ["preset", "garden_backbone.weights.h5", "keras_hub_backbone.weights.h5"]:
        backbone, _ = backbone_after_warm_start(tmp_path / source_path.split(".")[0], str(tmp_path / source_path))
        for ours, theirs in zip(backbone.weights, other.weights, strict=True):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_keras_hub_export_reloads_through_from_preset_as_the_runs_backbone(vision_run, tmp_path):
    """`--format keras_hub`: KerasHub's own MobileNet, reloaded by `Backbone.from_preset`, gives the
    run's backbone features; a backbone of Garden's own is refused in one line."""
    killed = tmp_path / ".keras_hub-killed"  # what a keras_hub export killed midway leaves: the next clears it
    killed.mkdir()
    (killed / "model.weights.h5").write_bytes(b"half")
    printed = garden("export", vision_run, "--format", "keras_hub", "--out", tmp_path).stdout
    assert "vs the run's backbone" in printed  # judged by the backbone alone: no held-out outputs computed
    assert not killed.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["keras_hub", "manifest.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "keras_hub").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700: others read it
    reloaded = keras_hub.models.Backbone.from_preset(str(tmp_path / "keras_hub"))
    hub = Run(str(vision_run)).model.get_layer("backbone").hub
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    assert type(reloaded) is type(hub) is keras_hub.models.MobileNetBackbone
    np.testing.assert_allclose(reloaded(images).numpy(), hub(images).numpy(), atol=1e-4)
    entry = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]["keras_hub"]
    assert entry["max_abs_error"] <= 1e-4 and entry["class"] == "MobileNetBackbone"
    own = build_task_model(experiment_config("mnist_resnet").task.model, "own").get_layer("backbone")
    with pytest.raises(GardenError, match="is Garden's own, not a KerasHub model"):
        keras_hub_model(own)


def test_warm_start_of_another_architecture_names_the_weight(vision_run, tmp_path):
    config = vision_config("mobilenet_v3", ["variant=small_100"], f"task.init_checkpoint={vision_run}")
    trainer = Trainer(config, str(tmp_path / "run"), resolve_strategy(config.runtime))
    with pytest.raises(GardenError, match=r"task.init_checkpoint .*: weight .* has shape \(.*\) there and \(.*\) here"):
        trainer.task.warm_start(trainer.models)
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    config = vision_config("mobilenet_v3", ["variant=small_050"], f"task.init_checkpoint={tmp_path}")
    trainer = Trainer(config, str(tmp_path / "run2"), resolve_strategy(config.runtime))
    with pytest.raises(GardenError, match="is not a Garden run folder .*, a checkpoint folder .* or a .weights.h5"):
        trainer.task.warm_start(trainer.models)


def test_frozen_blocks_stay_bit_identical_while_the_rest_trains(mnist_files, tmp_path):
    shards = str(mnist_files[1] / "train-*.tfrecord")
    config = vision_config(
        "mobilenet_v3",
        ["variant=small_050"],
        "task.model.trainable_backbone_blocks=2",
        f"task.train_data.input_path={shards}",
        "task.validation_data.input_path=''",
        "task.test_data.input_path=''",
        "task.train_data.global_batch_size=16",
        "trainer.train_steps=4",
        "trainer.steps_per_loop=2",
        "trainer.checkpoint_interval=4",
        "trainer.validation_interval=4",
        "trainer.optimizer_config.warmup.linear.warmup_steps=1",
    )
    trainer = Trainer(config, str(tmp_path / "run"), resolve_strategy(config.runtime))
    backbone = trainer.model.get_layer("backbone")
    stem, blocks = backbone_blocks(backbone)
    frozen = [w for layer in stem + [x for block in blocks[:-2] for x in block] for w in layer.weights]
    trained = [w for layer in blocks[-2] + blocks[-1] for w in layer.trainable_weights]
    before = {id(w): w.numpy().copy() for w in backbone.weights}
    trainer.train()
    assert frozen and all(np.array_equal(before[id(w)], w.numpy()) for w in frozen)  # moving statistics too
    # AdamW moves each element that has a gradient by about the learning rate: every element of the
    # trained blocks but a few of their squeeze-excite kernels, whose ReLU units can be dead on every
    # image (at least 99.86% of each weight's elements moved when written)
    moved = {w.path: np.mean(before[id(w)] != w.numpy()) for w in trained}
    assert trained and min(moved.values()) > 0.95, moved
    assert {id(w) for w in trainer.variables}.isdisjoint(id(w) for w in frozen)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_backbone_learning_rate_multiplier_scales_its_steps_and_decay(kind):
    """One step on two weights, one of them at 0.1x the rate, against the update rule by hand."""
    head, backbone = keras.Variable([1.0, -2.0]), keras.Variable([3.0, 0.5])
    gradient = np.array([0.5, -0.25], np.float32)
    if kind == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=0.1)
        step = lambda rate, w: w - rate * gradient  # noqa: E731
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=0.1, weight_decay=0.2, epsilon=1e-7)
        # decoupled decay first, then Adam's first step: m/(sqrt(v)+eps) = g/(|g| + eps/(1-beta2)^0.5 ...)
        adam = gradient / (np.abs(gradient) + 1e-7 * np.sqrt(1 - 0.999))  # ≈ sign(g)
        step = lambda rate, w: w * (1 - rate * 0.2) - rate * adam  # noqa: E731
    scale_learning_rate(optimizer, [backbone], 0.1)
    start = {"head": head.numpy().copy(), "backbone": backbone.numpy().copy()}
    optimizer.apply_gradients([(tf.constant(gradient), head), (tf.constant(gradient), backbone)])
    np.testing.assert_allclose(head.numpy(), step(0.1, start["head"]), rtol=1e-5)
    np.testing.assert_allclose(backbone.numpy(), step(0.01, start["backbone"]), rtol=1e-5)


def test_classes_and_examples_per_class_pick_a_balanced_subset():
    config = experiment_config(
        "mnist_resnet", sets=["task.train_data.classes=[5, 6, 7, 8, 9]", "task.train_data.examples_per_class=50"]
    )
    from garden.registry import TASKS

    examples = TASKS.get("image_classification")(config.task).load(config.task.train_data)
    everything = mnist("train")
    assert np.bincount(examples.labels, minlength=10).tolist() == [0] * 5 + [50] * 5
    chosen = np.flatnonzero(everything.labels == 7)
    np.testing.assert_array_equal(  # evenly spaced through the class, in order
        examples.features["image"][examples.labels == 7],
        everything.features["image"][chosen[np.arange(50) * len(chosen) // 50]],
    )
    with pytest.raises(GardenError, match="classes 12 are not in this data"):
        TASKS.get("image_classification")(config.task).load(
            experiment_config("mnist_resnet", sets=["task.train_data.classes=[12]"]).task.train_data
        )


def test_rgb_export_takes_png_and_jpeg_of_any_size_like_decoded_tensors(vision_run, tmp_path):
    out = tmp_path / "export"
    garden("export", vision_run, "--format", "saved_model", "--out", out)
    preprocessing = json.loads((out / "manifest.json").read_text())["preprocessing"]["image"]
    assert (preprocessing["height"], preprocessing["width"], preprocessing["color"]) == (32, 32, "RGB")
    loaded = tf.saved_model.load(str(out / "saved_model"))
    by_bytes, by_tensor = loaded.signatures["serving_bytes"], loaded.signatures["serving_default"]
    pixels, _ = mnist_pixels(6)
    rgb = np.stack([pixels] * 3, axis=-1)  # [6, 28, 28, 3]
    for size in [(32, 32), (20, 20), (57, 41)]:
        images = [np.asarray(Image.fromarray(image).resize(size[::-1], Image.NEAREST)) for image in rgb]
        pngs = [tf.io.encode_png(image) for image in images]
        jpegs = [tf.io.encode_jpeg(image, quality=95) for image in images]
        decoded_png = np.stack(images).astype(np.float32) / 255
        decoded_jpeg = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs]).astype(np.float32) / 255
        for encoded, decoded in [(pngs, decoded_png), (jpegs, decoded_jpeg)]:
            tensors = tf.image.resize(decoded, (32, 32)).numpy()  # bilinear, as the signature documents
            expected = by_tensor(image=tf.constant(tensors))["probabilities"].numpy()
            np.testing.assert_allclose(by_bytes(image_bytes=tf.stack(encoded))["probabilities"], expected, atol=1e-5)
    gray = tmp_path / "digit.png"
    Image.fromarray(pixels[0], mode="L").save(gray)  # grayscale, 28x28: read as equal R, G and B, resized
    (row,) = [json.loads(line) for line in garden("predict", out / "saved_model", gray).stdout.splitlines()]
    expected = by_bytes(image_bytes=tf.stack([tf.io.encode_png(rgb[0])]))["probabilities"].numpy()[0]
    assert row["class_id"] == int(np.argmax(expected))
    # predict sends the file's bytes through serving_bytes, which decodes them as the RGB PNG's: equal to the
    # 6 decimals it prints
    np.testing.assert_allclose(row["probabilities"], expected, atol=1e-6)

    (tmp_path / "notes.txt").write_text("not an image")
    failed = garden("predict", out / "saved_model", tmp_path / "notes.txt", check=False)
    assert failed.returncode == 2 and failed.stderr.strip().splitlines()[-1].startswith("garden: error: cannot read")
    np.save(tmp_path / "four_channels.npy", np.zeros((2, 32, 32, 4), np.float32))
    failed = garden("predict", out / "saved_model", tmp_path / "four_channels.npy", check=False)
    assert failed.stderr.strip().splitlines()[-1] == (
        "garden: error: input has shape (2, 32, 32, 4) but the model's input 'image' expects (N, 32, 32, 3)"
    )


def test_l2_weight_decay_adds_half_the_squared_kernels_to_the_loss(tmp_path):
    """Model Garden's l2_weight_decay: at learning rate 0 (weights fixed), the first step's loss grows by
    l2/2 x the sum of squared convolution and dense kernels, computed here from the model's weights."""
    common = [
        "task.train_data.num_examples=64",
        "task.train_data.global_batch_size=64",
        "task.validation_data.dataset=''",
        "task.test_data.dataset=''",
        "trainer.train_steps=1",
        "trainer.steps_per_loop=1",
        "trainer.checkpoint_interval=1",
        "trainer.validation_interval=1",
        "trainer.optimizer_config.warmup.type=null",
        "trainer.optimizer_config.learning_rate={type: constant, constant: {learning_rate: 0.0}}",
    ]
    losses, kernels = [], None
    for l2 in (0.0, 0.5):
        config = experiment_config("mnist_resnet", sets=[*common, f"task.l2_weight_decay={l2}"])
        trainer = Trainer(config, str(tmp_path / str(l2)), resolve_strategy(config.runtime))
        trainer.train()
        kernels = [w.numpy() for w in trainer.model.weights if w.path.endswith("/kernel")]
        rows = [json.loads(line) for line in (tmp_path / str(l2) / "metrics.jsonl").read_text().splitlines()]
        losses.append(next(row["loss"] for row in rows if row["split"] == "train"))
    assert len(kernels) == 1 + 2 * 2 + 1 + 1  # stem, two convolutions per block, one projection, the logits
    np.testing.assert_allclose(losses[1] - losses[0], 0.5 / 2 * sum(float(np.sum(k**2)) for k in kernels), rtol=1e-4)
