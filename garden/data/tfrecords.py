"""Sharded TFRecord files of `tf.train.Example`s with Model Garden's image keys, read as a stream.

`input_path` takes a glob, a comma-separated list of globs or files, or both, as Model Garden's
input reader does. Records hold an encoded image (`image_key`, default `image/encoded`) and an
integer label (`label_key`, default `image/class/label`); `garden data convert` writes them, with
the class's name in `image/class/text` as Model Garden's converters do. Training data's class names
are read from those names (one pass over the labels); another split's records are checked against
the training data's names, so splits converted with different class maps are refused, not read
with shifted ids.
"""

import numpy as np
import tensorflow as tf

from garden.data.streams import Stream
from garden.errors import GardenError
from garden.registry import DATASETS

CLASS_TEXT = "image/class/text"


def match_files(input_path: str) -> list[str]:
    """The files of a comma-separated list of paths and globs, each glob's matches sorted."""
    patterns = [p.strip() for p in input_path.split(",") if p.strip()]
    if not patterns:
        raise GardenError("input_path is empty; set it to TFRecord files or a glob such as 'data/train-*.tfrecord'")
    files = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise GardenError(f"no file matches '{pattern}'; check the path (globs such as data/train-* are fine)")
        folders = [m for m in matched if tf.io.gfile.isdir(m)]
        if folders:
            raise GardenError(
                f"{folders[0]} is a folder, not TFRecord files; name its files (for example '{folders[0]}/*'), "
                "or set dataset=image_folder for a folder of class subfolders"
            )
        files += matched
    return files


@DATASETS.register("tfrecord")
def tfrecord(config, label_names=None) -> Stream:
    """Image examples: `image_key` holds JPEG/PNG/GIF/BMP bytes, `label_key` the class id."""
    return _image_records(config, label_names, tf.io.FixedLenFeature([], tf.int64))


@DATASETS.register("multi_label_tfrecord")
def multi_label_tfrecord(config, label_names=None) -> Stream:
    """Image examples of any number of classes (Model Garden's `is_multilabel`): `label_key` holds every
    class id of the image, none or several; multi-label tasks train on them as multi-hot labels."""
    return _image_records(config, label_names, tf.io.VarLenFeature(tf.int64), multi_label=True)


def _image_records(config, label_names, label_feature, multi_label=False) -> Stream:
    image_key, label_key = config.image_key, config.label_key
    spec = {image_key: tf.io.FixedLenFeature([], tf.string), label_key: label_feature}
    files = match_files(config.input_path)
    named = not multi_label and _has_feature(files, CLASS_TEXT)
    if named:
        label_names = label_names or class_texts(files, label_key)
        spec[CLASS_TEXT] = tf.io.FixedLenFeature([], tf.string, default_value="")
        names = tf.constant(list(label_names))
        mismatch = (
            f"a record's {CLASS_TEXT} names another class than its id does in the training data "
            f"({', '.join(label_names[:5])}{', ...' if len(label_names) > 5 else ''}): the splits were converted "
            "with different class maps; convert this one with --labels-from TRAINING_DATA"
        )

    def parse(file_id, record):
        example = tf.io.parse_single_example(record, spec)
        label = example[label_key]
        features = {"image_bytes": example[image_key]}
        if named:  # ids outside the names are the task's to refuse
            known = (label >= 0) & (label < len(label_names))
            same = tf.equal(tf.gather(names, tf.clip_by_value(label, 0, len(label_names) - 1)), example[CLASS_TEXT])
            check = tf.debugging.assert_equal(~known | same | tf.equal(example[CLASS_TEXT], ""), True, message=mismatch)
            with tf.control_dependencies([check]):
                features = {"image_bytes": tf.identity(example[image_key])}
        return features, label.values if multi_label else label

    return Stream(files, tf.data.TFRecordDataset, parse, label_names, config, multi_label=multi_label)


def _has_feature(files: list[str], key: str) -> bool:
    """Whether the first record of `files` holds feature `key`."""
    first = next(iter(tf.data.TFRecordDataset(files[0]).take(1)), None)
    return first is not None and key in tf.train.Example.FromString(first.numpy()).features.feature


def class_texts(files: list[str], label_key: str = "image/class/label") -> list[str]:
    """The class names that the records' `image/class/text` give each id, in id order (an id no record
    names is named by its number), read in one pass over the label features; an id named two ways
    is refused."""
    spec = {
        label_key: tf.io.FixedLenFeature([], tf.int64),
        CLASS_TEXT: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    records = tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE)
    records = records.map(lambda r: tf.io.parse_single_example(r, spec)).ignore_errors()  # the stream names them
    found = {}
    for batch in records.batch(4096).as_numpy_iterator():
        for label, text in set(zip(batch[label_key].tolist(), batch[CLASS_TEXT].tolist())):
            if text and found.setdefault(label, text) != text:
                raise GardenError(
                    f"{_named(files)}: class id {label} is named both '{found[label].decode()}' and "
                    f"'{text.decode()}' in {CLASS_TEXT}; convert the data again from its class folders"
                )
    top = int(np.max(list(found))) if found else -1
    return [found[i].decode() if i in found else str(i) for i in range(top + 1)]


def _named(files: list[str]) -> str:
    return files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more files)"
