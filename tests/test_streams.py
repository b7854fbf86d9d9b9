"""Streamed data: TFRecord shards and image folders written by the tests, read as Garden streams them:
agreement with the catalog's arrays, every example once per epoch on 1-3 input pipelines, exact
resume of shuffled, augmented streams, and one-line errors for bad files."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import MNIST_FILES_COUNT as COUNT
from conftest import garden, mnist_pixels, sets, train_killed_after
from PIL import Image

from garden.config import DataConfig
from garden.data.pipeline import eval_dataset, train_dataset
from garden.data.streams import Stream, bad_records_named
from garden.data.tfrecords import tfrecord
from garden.errors import GardenError
from garden.registry import TASKS
from garden.resolve import experiment_config


def image_task(*overrides):
    config = experiment_config("mnist_resnet", sets=overrides)
    return TASKS.get(config.task.type)(config.task)


def read_all(task, data_config):
    """(8-bit pixels, labels) of every example the stream gives for evaluation."""
    images, labels = [], []
    for features, batch_labels in eval_dataset(task.load(data_config), 64):
        images.append(np.round(features["image"].numpy()[..., 0] * 255).astype(np.uint8))
        labels.append(batch_labels.numpy())
    return np.concatenate(images), np.concatenate(labels)


def canonical(pixels, labels):
    order = np.lexsort((np.array([p.tobytes() for p in pixels]), labels))
    return pixels[order], labels[order]


def test_folder_and_tfrecord_readers_give_the_catalog_examples(mnist_files):
    folder, shards = mnist_files
    task = image_task()
    expected = canonical(*mnist_pixels())
    for data in (
        DataConfig(dataset="image_folder", input_path=str(folder)),
        DataConfig(dataset="tfrecord", input_path=f"{shards}/train-*"),
        DataConfig(dataset="tfrecord", input_path=f"{shards}/train-00000-of-00004.tfrecord,{shards}/train-0000[123]*"),
    ):
        pixels, labels = canonical(*read_all(task, data))
        np.testing.assert_array_equal(labels, expected[1])
        np.testing.assert_array_equal(pixels, expected[0])
    spread = task.load(DataConfig(dataset="image_folder", input_path=str(folder))).to_examples(40)
    assert len(spread) == 40 and set(spread.labels) == set(range(10))  # the folder is sorted by class
    record = next(iter(tf.data.TFRecordDataset(str(shards / "train-00002-of-00004.tfrecord"))))
    feature = tf.train.Example.FromString(record.numpy()).features.feature  # Model Garden's keys, read by protobuf
    label = feature["image/class/label"].int64_list.value[0]
    assert feature["image/format"].bytes_list.value == [b"png"]
    assert feature["image/class/text"].bytes_list.value == [str(label).encode()]
    assert sorted(os.listdir(shards)) == [f"train-0000{i}-of-00004.tfrecord" for i in range(4)]


def write_id_shards(folder, files, per_file):
    """`files` TFRecord files of `per_file` records whose label is the record's unique id."""
    folder.mkdir()
    for f in range(files):
        with tf.io.TFRecordWriter(str(folder / f"ids-{f}.tfrecord")) as writer:
            for r in range(per_file):
                feature = {
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[f * per_file + r])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return f"{folder}/ids-*"


def ids(dataset, count):
    return [int(label) for _, labels in dataset.take(count) for label in labels.numpy()]


@pytest.mark.parametrize("files,pipelines", [(4, 1), (4, 2), (4, 3), (2, 3)])
def test_every_example_once_per_epoch_on_each_input_pipeline(tmp_path, files, pipelines):
    """By file (at least as many files as pipelines) or by record (fewer): the shares are disjoint,
    cover every record, and each pipeline's epochs visit its share once each, in new orders."""
    stream = tfrecord(DataConfig(input_path=write_id_shards(tmp_path / "ids", files, 30), shuffle_buffer_size=8))
    stream.label_names = []
    shares = []
    for pipeline in range(pipelines):
        context = tf.distribute.InputContext(pipelines, pipeline, pipelines)
        size = stream.share_size(pipelines, pipeline)
        seen = ids(train_dataset(stream, pipelines, seed=5, input_context=context), 2 * size)
        first, second = seen[:size], seen[size:]
        assert len(set(first)) == size and set(second) == set(first) and second != first
        shares.append(set(first))
    assert sum(len(s) for s in shares) == files * 30 and set().union(*shares) == set(range(files * 30))
    assert stream.share(pipelines, 0)[1] == (files < pipelines)  # by record only with fewer files


def test_a_resumed_stream_repeats_the_batches_and_augmentations(mnist_files):
    folder, _ = mnist_files
    task = image_task()
    data = DataConfig(
        dataset="image_folder", input_path=str(folder), shuffle_buffer_size=64, aug_crop=True, aug_rand_hflip=True
    )
    stream = task.load(data)
    for pipelines in (1, 2):
        context = tf.distribute.InputContext(pipelines, pipelines - 1, pipelines)
        full = list(train_dataset(stream, 32, seed=7, input_context=context).take(30))
        resumed = list(train_dataset(stream, 32, seed=7, start_step=17, input_context=context).take(13))
        for (a, la), (b, lb) in zip(full[17:], resumed):  # step 17 is in the second epoch of a 200-image share
            np.testing.assert_array_equal(la.numpy(), lb.numpy())
            np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
    evaluated = next(iter(eval_dataset(stream, 400)))[0]["image"].numpy()
    augmented = np.concatenate([batch["image"].numpy() for batch, _ in full])
    assert not any(np.array_equal(augmented[0], image) for image in evaluated)  # cropped or flipped


def test_killed_streaming_run_resumes_to_the_same_weights(mnist_files, tmp_path):
    """SIGKILL after a checkpoint, restart: the uninterrupted run's weights, on shuffled, augmented
    TFRecord shards."""
    _, shards = mnist_files
    stream = [
        "task.train_data.dataset=tfrecord",
        f"task.train_data.input_path={shards}/train-*",
        "task.train_data.num_examples=-1",
        "task.train_data.shuffle_buffer_size=100",
        "task.train_data.aug_crop=true",
        "task.train_data.aug_rand_hflip=true",
        "task.validation_data.dataset=''",
        "trainer.train_steps=120",
        "trainer.steps_per_loop=10",
        "trainer.checkpoint_interval=20",
    ]
    whole = garden("train", "mnist_resnet", *sets(*stream), "--run-dir", tmp_path / "whole").stdout
    train_killed_after(20, tmp_path / "killed", "mnist_resnet", *sets(*stream))
    assert not (tmp_path / "killed" / "checkpoints" / "ckpt-120.index").exists()
    resumed = garden("train", "mnist_resnet", *sets(*stream), "--run-dir", tmp_path / "killed").stdout
    assert "resumed from" in resumed and "sharded" not in resumed
    prints = [line.split()[-1] for out in (whole, resumed) for line in out.splitlines() if "fingerprint" in line]
    assert len(prints) == 2 and prints[0] == prints[1]


def first_error(task, data):
    """The GardenError that training on `data` raises, as the trainer names it."""
    with pytest.raises(GardenError) as error:
        with bad_records_named(stream := task.load(data)):
            for _ in train_dataset(stream, 50, seed=0).take(20):
                pass
    return str(error.value)


def test_bad_streamed_data_is_named(mnist_files, tmp_path, caplog):
    folder, shards = mnist_files
    task = image_task()
    with pytest.raises(GardenError, match="no file matches"):
        task.load(DataConfig(dataset="tfrecord", input_path=f"{shards}/train-*,{tmp_path}/none-*.tfrecord"))
    with pytest.raises(GardenError, match="aug_crop applies to streamed data .* mnist is held in memory"):
        task.load(DataConfig(dataset="mnist", split="test", aug_crop=True))
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(GardenError, match="has no class subfolders"):
        task.load(DataConfig(dataset="image_folder", input_path=str(tmp_path / "flat")))
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(GardenError, match="but no images"):
        task.load(DataConfig(dataset="image_folder", input_path=str(tmp_path / "empty")))

    corrupt = tmp_path / "corrupt"
    shutil.copytree(shards, corrupt)
    target = corrupt / "train-00001-of-00004.tfrecord"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2] + b"\x00" * 64 + data[len(data) // 2 + 64 :])
    message = first_error(task, DataConfig(dataset="tfrecord", input_path=f"{corrupt}/train-*"))
    assert message.startswith(f"{target}, after record ") and "corrupted record" in message, message

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "3" / "bad.png").write_bytes(b"not an image")
    message = first_error(task, DataConfig(dataset="image_folder", input_path=str(broken)))
    assert message.startswith(f"{broken / '3' / 'bad.png'}, record 0: Unknown image file format"), message
    skipping = DataConfig(dataset="image_folder", input_path=str(broken), skip_bad_examples=True)
    assert len(task.load(skipping)) == COUNT
    assert (
        f"skipping bad example: {broken / '3' / 'bad.png'}" in caplog.text
        and "skipped 1 bad examples of 401" in caplog.text
    )


@pytest.mark.timeout(300)
def test_skipping_bad_examples_when_every_one_is_bad_is_one_line(tmp_path):
    """The fault: skip_bad_examples=true over data of bad examples only read empty epochs forever."""
    for name in ("cat", "dog"):
        (tmp_path / "bad" / name).mkdir(parents=True)
        (tmp_path / "bad" / name / "x.png").write_bytes(b"not an image")
    data = DataConfig(dataset="image_folder", input_path=str(tmp_path / "bad"), skip_bad_examples=True)
    with pytest.raises(GardenError, match=r"^every one of the 2 examples is bad \(the first: .*cat/x.png, record 0: "):
        image_task("task.model.head.params.num_classes=2").load(data)


def test_an_image_folder_reads_nested_images_skips_hidden_files_and_refuses_classes_without_images(tmp_path):
    """The faults: nested images were dropped (Keras reads them), `.ipynb_checkpoints` became class 0, an
    AppleDouble `._x.png` stopped training, an empty class folder took an id, and a head of 10 classes
    trained on 2 class folders."""
    root = tmp_path / "pets"
    shades = {"cat/a.png": 10, "cat/indoor/b.png": 20, "dog/c.png": 30, "dog/d.png": 40}
    for name, shade in shades.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((28, 28), shade, np.uint8), mode="L").save(root / name)
    (root / "dog" / "._c.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # not an image: read, it would fail
    (root / "dog" / ".DS_Store").write_bytes(b"junk")
    (root / ".ipynb_checkpoints" / "cat").mkdir(parents=True)
    shutil.copy(root / "cat" / "a.png", root / ".ipynb_checkpoints" / "cat" / "a.png")
    (root / "cat" / ".hidden").mkdir()
    shutil.copy(root / "dog" / "c.png", root / "cat" / ".hidden" / "c.png")
    data = DataConfig(dataset="image_folder", input_path=str(root))
    with pytest.raises(GardenError, match=rf"^{root} has 2 class folders \(cat, dog\) and the head 10 classes; set "):
        image_task().load(data)
    task = image_task("task.model.head.params.num_classes=2")
    assert task.load(data).label_names == ["cat", "dog"]
    pixels, labels = read_all(task, data)
    assert sorted(zip(pixels[:, 0, 0].tolist(), labels.tolist())) == [(10, 0), (20, 0), (30, 1), (40, 1)]

    (root / "emu").mkdir()
    with pytest.raises(GardenError, match=rf"^{root} has class folders without images \(emu\); each would take"):
        image_task("task.model.head.params.num_classes=3").load(data)
    validation = image_task("task.model.head.params.num_classes=3").load(data, ["cat", "dog", "emu"])
    assert validation.label_names == ["cat", "dog", "emu"]  # a validation split may lack a class
    assert len(validation) == 4


def test_converted_splits_keep_the_training_class_names_and_ids_or_are_refused(tmp_path):
    """The faults: shards converted from a folder trained with labels '0'..'3', not its class names,
    and a validation folder lacking one class converted with shifted ids ('d' was 3 in training and 2
    in validation) that validation read without a word."""
    shades = {"a": 10, "b": 20, "c": 30, "d": 40}
    for split, classes in (("train", "abcd"), ("validation", "acd")):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(3):
                image = np.full((28, 28), shades[name] + i, np.uint8)
                Image.fromarray(image, mode="L").save(tmp_path / split / name / f"{i}.png")
    train, validation = f"{tmp_path}/train-*.tfrecord", f"{tmp_path}/validation-*.tfrecord"
    garden("data", "convert", tmp_path / "train", "--out", train, "--shards", "2")
    garden("data", "convert", tmp_path / "validation", "--out", validation, "--shards", "2")
    task = image_task("task.model.head.params.num_classes=4")
    names = task.load(DataConfig(dataset="tfrecord", input_path=train)).label_names
    assert names == ["a", "b", "c", "d"]
    shifted = task.load(DataConfig(dataset="tfrecord", input_path=validation), names)
    with pytest.raises(GardenError, match="names another class than its id does in the training data .*--labels-from"):
        with bad_records_named(shifted):
            list(eval_dataset(shifted, 4))

    again = f"{tmp_path}/validation2-*.tfrecord"
    garden("data", "convert", tmp_path / "validation", "--out", again, "--labels-from", tmp_path / "train")
    pixels, labels = read_all(task, DataConfig(dataset="tfrecord", input_path=again))
    expected = {shade + i: "abcd".index(name) for name, shade in shades.items() for i in range(3)}
    assert sorted(zip(pixels[:, 0, 0].tolist(), labels.tolist())) == sorted(
        (shade, label) for shade, label in expected.items() if shade // 10 != 2
    )
    assert task.load(DataConfig(dataset="tfrecord", input_path=again), names).label_names == names


def test_a_label_outside_the_head_stops_training_in_one_line_without_a_checkpoint(mnist_files, tmp_path):
    """Shards that name their classes are refused before training; shards of bare ids at the first
    record whose id the head lacks."""
    _, shards = mnist_files
    bare = tmp_path / "bare"  # the same records without image/class/text
    bare.mkdir()
    with tf.io.TFRecordWriter(str(bare / "train-00000.tfrecord")) as writer:
        for record in tf.data.TFRecordDataset(sorted(map(str, shards.glob("train-*")))):
            example = tf.train.Example.FromString(record.numpy())
            del example.features.feature["image/class/text"]
            writer.write(example.SerializeToString())
    for folder, refusal in (
        (shards, "the data has 10 labels but the head has 5 classes; set task.model.head.params.num_classes=10"),
        (bare, f"{bare}/train-00000.tfrecord, "),
    ):
        overrides = (
            f"task.train_data.input_path={folder}/train-*",
            "task.train_data.dataset=''",
            "task.train_data.num_examples=-1",
            "task.validation_data.dataset=''",
            "task.model.head.params.num_classes=5",
        )
        result = garden("train", "mnist_resnet", *sets(*overrides), "--run-dir", tmp_path / "run", check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"garden: error: {refusal}"), lines[0]
        assert folder == shards or "a label is outside 0..4" in lines[0]
        assert not list((tmp_path / "run").glob("checkpoints/ckpt-*"))


def test_a_tfds_dataset_prepared_offline_streams_the_catalog_examples(tmp_path):
    """A TFDS dataset the test stores (no download) into a data dir, read by name from its files."""
    import tensorflow_datasets as tfds

    pixels, labels = mnist_pixels(100)
    features = {"image": tfds.features.Image(shape=(28, 28, 1)), "label": tfds.features.ClassLabel(num_classes=10)}
    tfds.dataset_builders.store_as_tfds_dataset(
        name="garden_tiny_digits",
        version="1.0.0",
        features=tfds.features.FeaturesDict(features),
        split_datasets={"test": tf.data.Dataset.from_tensor_slices({"image": pixels[..., None], "label": labels})},
        data_dir=str(tmp_path),
        file_format="tfrecord",
    )
    task = image_task()
    data = DataConfig(dataset="tfds", tfds_name="garden_tiny_digits", tfds_split="test", tfds_data_dir=str(tmp_path))
    stream = task.load(data)
    assert stream.label_names == [str(d) for d in range(10)] and len(stream) == 100
    read = canonical(*read_all(task, data))
    expected = canonical(pixels, labels)
    np.testing.assert_array_equal(read[1], expected[1])
    np.testing.assert_array_equal(read[0], expected[0])
    with pytest.raises(GardenError, match=r"TFDS dataset 'mnist' is not prepared under .*; prepare it where"):
        task.load(DataConfig(dataset="tfds", tfds_name="mnist", tfds_data_dir=str(tmp_path)))
    with pytest.raises(GardenError, match="has no split 'validation'; choose from test"):
        task.load(data.replace(tfds_split="validation"))


WORDS = "the a good bad film plot actor great dull scene story ending".split()


def write_texts(folder, rows, kinds=(".tsv", ".jsonl")):
    """The same labelled sentences as a TSV file (header sentence, label) and a JSONL file, each split in two."""
    paths = {}
    folder.mkdir(exist_ok=True)
    for kind in kinds:
        for part in range(2):
            path = folder / f"part{part}{kind}"
            with open(path, "w", encoding="utf-8") as f:
                if kind == ".tsv":
                    f.write("sentence\tlabel\n")
                for text, label in rows[part::2]:
                    f.write(
                        f"{text}\t{label}\n"
                        if kind == ".tsv"
                        else json.dumps({"sentence": text, "label": label}) + "\n"
                    )
            paths.setdefault(kind, []).append(str(path))
    return paths


def text_rows(count, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (" ".join(rng.choice(WORDS, size=rng.integers(3, 12))), str(rng.choice(["neg", "pos", "mixed"])))
        for _ in range(count)
    ]


def token_batches(task, data):
    """(token ids, labels) of every example, as the task's prepare gives them for evaluation, in text order."""
    rows = []
    for features, labels in eval_dataset(task.load(data), 16, task.prepare):
        rows += zip(map(tuple, features["token_ids"].numpy().tolist()), labels.numpy().tolist())
    return sorted(rows)


def test_large_text_files_stream_line_by_line_with_the_in_memory_tokens_and_labels(tmp_path):
    paths = write_texts(tmp_path, text_rows(120))
    config = experiment_config(
        "sst2_bert_small", sets=["task.model.tokenizer.sequence_length=16", "task.model.head.params.num_classes=3"]
    )
    task = TASKS.get(config.task.type)(config.task)
    for kind, files in paths.items():
        in_memory = DataConfig(dataset="text_file", input_path=",".join(files))
        streamed = in_memory.replace(in_memory_limit=0)
        assert isinstance(task.load(streamed), Stream) and not isinstance(task.load(in_memory), Stream)
        assert task.load(streamed).label_names == task.load(in_memory).label_names == ["mixed", "neg", "pos"]
        expected = token_batches(task, in_memory)
        assert len(expected) == 120 and token_batches(task, streamed) == expected, kind
    unseen = write_texts(tmp_path / "unseen", [("a good film", "pos"), ("a dull plot", "meh")], kinds=(".tsv",))[".tsv"]
    with pytest.raises(GardenError) as error:
        stream = task.load(
            DataConfig(dataset="text_file", input_path=",".join(unseen), in_memory_limit=0), ["neg", "pos"]
        )
        with bad_records_named(stream):
            list(eval_dataset(stream, 4))
    assert str(error.value).startswith(f"{unseen[1]}, record 0: a label is not among the training data's labels")


def test_a_file_streamed_in_one_block_gives_the_in_memory_batches(tmp_path):
    """Where both paths apply (one file, a shuffle block that holds the epoch), the stream's batches
    are the in-memory pipeline's, from the start and from a resumed step."""
    (path,) = write_texts(tmp_path, text_rows(90), kinds=(".tsv",))[".tsv"][:1]
    config = experiment_config("sst2_bert_small", sets=["task.model.head.params.num_classes=3"])
    task = TASKS.get(config.task.type)(config.task)
    in_memory = DataConfig(dataset="text_file", input_path=path)
    streamed = in_memory.replace(in_memory_limit=0, shuffle_buffer_size=1000)
    for start in (0, 4):
        batches = [
            [
                (f["text"].numpy().tolist(), y.numpy().tolist())
                for f, y in train_dataset(task.load(data), 8, 3, start).take(9)
            ]
            for data in (in_memory, streamed)
        ]
        assert batches[0] == batches[1] and len(batches[0]) == 9


STATEFUL_RANDOM_OPS = {"RandomUniform", "RandomUniformInt", "RandomStandardNormal", "RandomGamma", "RandomShuffle"}


def random_ops(dataset):
    """The names of the stateful random ops in a dataset's graph and its functions."""
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    ops = {node.op for node in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    return ops & STATEFUL_RANDOM_OPS


def test_randaugment_and_random_erasing_draw_statelessly_and_repeat_on_resume(tmp_path):
    """Model Garden's RandAugment and RandomErasing, seeded by position: the graph holds no stateful
    random op (as it does when Model Garden's ops run unseeded), and a resumed stream repeats them."""
    from official.vision.ops import augment

    rng = np.random.default_rng(0)
    for index in range(48):
        folder = tmp_path / "rgb" / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    task = image_task("task.model.backbone.params.image_shape=[32, 32, 3]", "task.model.head.params.num_classes=2")
    data = DataConfig(
        dataset="image_folder",
        input_path=str(tmp_path / "rgb"),
        shuffle_buffer_size=16,
        aug_crop=True,
        aug_type="randaug",
        random_erasing=0.5,
    )
    stream = task.load(data)
    full = train_dataset(stream, 8, seed=1)
    assert not random_ops(full)
    unseeded = tf.data.Dataset.from_tensors(tf.zeros([32, 32, 3], tf.uint8)).map(augment.RandAugment().distort)
    assert random_ops(unseeded)  # the check sees Model Garden's own draws
    images = [batch["image"].numpy() for batch, _ in full.take(10)]
    resumed = [batch["image"].numpy() for batch, _ in train_dataset(stream, 8, seed=1, start_step=7).take(3)]
    for a, b in zip(images[7:], resumed):
        np.testing.assert_array_equal(a, b)
    plain = [
        batch["image"].numpy()
        for batch, _ in train_dataset(
            task.load(
                DataConfig(
                    dataset="image_folder", input_path=str(tmp_path / "rgb"), shuffle_buffer_size=16, aug_crop=True
                )
            ),
            8,
            seed=1,
        ).take(10)
    ]
    assert not all(np.array_equal(a, b) for a, b in zip(images, plain))  # RandAugment and erasing changed them


def test_mixup_and_cutmix_mix_streamed_batches_repeatably_and_train_on_distributions(tmp_path):
    rng = np.random.default_rng(1)
    for index in range(32):
        folder = tmp_path / "rgb" / f"class{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    task = image_task(
        "task.model.backbone.params.image_shape=[32, 32, 3]",
        "task.model.head.params.num_classes=4",
        "task.train_data.mixup_and_cutmix=true",
    )
    stream = task.load(task.config.train_data.replace(dataset="image_folder", input_path=str(tmp_path / "rgb")))
    full = train_dataset(stream, 8, seed=2)
    assert not random_ops(full)
    batches = [(f["image"].numpy(), y.numpy()) for f, y in full.take(6)]
    for (image, labels), (again, again_labels) in zip(
        batches[4:], train_dataset(stream, 8, seed=2, start_step=4).take(2)
    ):
        np.testing.assert_array_equal(image, again["image"].numpy())
        np.testing.assert_array_equal(labels, again_labels.numpy())
    labels = np.concatenate([y for _, y in batches])
    assert labels.shape == (48, 4) and np.allclose(labels.sum(axis=1), 1) and labels.min() >= 0.1 / 4 - 1e-6
    assert not np.allclose(labels.max(axis=1), 0.925)  # mixed, not only smoothed one-hot rows
    logits = rng.normal(size=(48, 4)).astype(np.float32)
    expected = -np.sum(labels * (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))), axis=1)
    np.testing.assert_allclose(task.build_loss()(labels, {"logits": logits}), expected, rtol=1e-5)
