"""Sharded TFRecord files of `tf.train.Example`s with Model Garden's image keys, read as a stream.

`input_path` takes a glob, a comma-separated list of globs or files, or both, as Model Garden's
input reader does. Records hold an encoded image (`image_key`, default `image/encoded`) and an
integer label (`label_key`, default `image/class/label`); `garden data convert` writes them.
"""

import tensorflow as tf

from garden.data.streams import Stream
from garden.errors import GardenError
from garden.registry import DATASETS


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

    def parse(file_id, record):
        example = tf.io.parse_single_example(record, spec)
        label = example[label_key]
        return {"image_bytes": example[image_key]}, label.values if multi_label else label

    files = match_files(config.input_path)
    return Stream(files, tf.data.TFRecordDataset, parse, label_names, config, multi_label=multi_label)
