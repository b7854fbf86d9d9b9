"""`garden data convert`: any reader's examples -> sharded TFRecord files of `tf.train.Example`s.

Images keep Model Garden's keys (`image/encoded`, `image/format`, `image/class/label`,
`image/class/text`); texts get the text_file reader's default columns (`sentence`, `sentence2` for
pairs, `label` as the label's name), so `text_file` reads the shards back with no column settings.

Example i goes to shard i mod N (so every shard holds every class of a folder sorted by class); the
shards are written beside their final names and renamed once all are whole, so a failed or
interrupted conversion leaves no partial file behind.
"""

import glob
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf
import tqdm

from garden.config import DataConfig
from garden.data.examples import Examples
from garden.data.streams import Stream, bad_records_named, raw_examples
from garden.data.text_streams import JSON_LINES, TABLES
from garden.errors import GardenError
from garden.registry import DATASETS
from garden.run_folder import FolderLock

TEXT_FILES = TABLES + JSON_LINES
CONVERT_FIX = (
    "fix or remove it (convert copies records of one label each; multi-label image records train as they are, "
    "as dataset multi_label_tfrecord)"
)
STAGING = ".convert-"  # the hidden folder shards are written in before they are renamed into place
_FORMATS = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpeg", b"GIF8": "gif", b"BM": "bmp"}


def shard_paths(out: str, shards: int) -> list[str]:
    """`out` with its `*` (or, lacking one, its end) numbered as Model Garden's shards are: 00000-of-00004."""
    if out.count("*") > 1:
        raise GardenError(f"--out '{out}' has more than one '*'; use one, where the shard number goes")
    stem, star, tail = out.partition("*")
    return [f"{stem}{i:05d}-of-{shards:05d}{tail}" if star else f"{out}-{i:05d}-of-{shards:05d}" for i in range(shards)]


def _image_format(data: bytes) -> str:
    return next((name for magic, name in _FORMATS.items() if data.startswith(magic)), "")


def _bytes(value) -> tf.train.Feature:
    value = value if isinstance(value, bytes) else str(value).encode()
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _image_example(data: bytes, label: int, label_names) -> dict:
    feature = {
        "image/encoded": _bytes(data),
        "image/format": _bytes(_image_format(data)),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    if label_names:
        feature["image/class/text"] = _bytes(label_names[label])
    return feature


def _text_example(features: dict, label: int, label_names) -> dict:
    feature = {"sentence": _bytes(features["text"]), "label": _bytes(label_names[label])}
    if "text_pair" in features:
        feature["sentence2"] = _bytes(features["text_pair"])
    return feature


def _examples(data):
    """tf.train.Example features of each example: image bytes as they are stored (in-memory float
    images as 8-bit PNG), or texts with their label names."""
    if isinstance(data, Stream):
        for features, label in raw_examples(data):
            yield (
                _image_example(features["image_bytes"], label, data.label_names)
                if "image_bytes" in features
                else _text_example(features, label, data.label_names)
            )
        return
    if set(data.features) == {"image"}:
        for image, label in zip(data.features["image"], data.labels):
            png = tf.io.encode_png(np.round(np.asarray(image) * 255).astype(np.uint8)).numpy()
            yield _image_example(png, int(label), data.label_names)
    elif set(data.features) <= {"text", "text_pair"} and "text" in data.features:
        for index, label in enumerate(data.labels):
            yield _text_example({k: v[index] for k, v in data.features.items()}, int(label), data.label_names)
    else:
        raise GardenError(
            f"only image and text classification data convert to TFRecord; this has {sorted(data.features)}"
        )


def _source_config(source: str, split: str = "") -> DataConfig:
    """How `source` (a catalog dataset name, a folder of class subfolders, text or image TFRecord files) reads."""
    if source in DATASETS:
        return DataConfig(dataset=source, split=split or "train")
    if os.path.isdir(source):
        return DataConfig(dataset="image_folder", input_path=source)
    if os.path.splitext(source.split(",")[0])[1] in TEXT_FILES:
        return DataConfig(dataset="text_file", input_path=source, in_memory_limit=0)  # streamed: any size
    return DataConfig(dataset="tfrecord", input_path=source)


def convert(source: str, out: str, shards: int, split: str = "", progress: bool = True, labels_from: str = "") -> dict:
    """Writes the examples of `source` (a catalog dataset name, a folder of class subfolders, text
    files, or image TFRecord files) to `shards` TFRecord files named by `out`; returns a summary.
    `labels_from` names the training data (as `source` would) whose class map a split converts with:
    a validation folder that lacks a class keeps the training data's ids."""
    if shards < 1:
        raise GardenError(f"--shards must be 1 or more, got {shards}")
    config = _source_config(source, split)
    label_names = None
    if labels_from:
        training = _source_config(labels_from, "train")
        label_names = DATASETS.get(training.dataset)(training, None).label_names
        if not label_names:
            raise GardenError(f"--labels-from {labels_from} names no classes; name the training data it converted")
    data = DATASETS.get(config.dataset)(config, label_names)
    records = _examples(data)
    paths = shard_paths(out, shards)
    folder = os.path.dirname(os.path.abspath(paths[0]))
    with FolderLock(folder, "data convert", flag="--out"):
        existing = [p for p in paths if os.path.exists(p)]
        if existing:
            raise GardenError(f"{existing[0]} exists; remove it or choose another --out")
        for stale in glob.glob(os.path.join(glob.escape(folder), f"{STAGING}*")):  # a killed conversion's
            shutil.rmtree(stale, ignore_errors=True)
        count = _write(data, records, paths, folder, shards, progress)
    if not count:
        raise GardenError(f"{source} has no examples to convert")
    return {"examples": count, "shards": paths, "labels": len(data.label_names or [])}


def _write(data, records, paths, folder, shards, progress) -> int:
    """Writes `records` round robin into `shards` files staged in `folder`, renamed to `paths` once all
    are whole; returns how many (none written when there are none)."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=STAGING) as staging:
        staged = [os.path.join(staging, os.path.basename(p)) for p in paths]
        writers = [tf.io.TFRecordWriter(p) for p in staged]
        count = 0
        total = len(data) if isinstance(data, Examples) or data.counts else None  # a TFRecord count costs a read
        bar = tqdm.tqdm(records, total=total, unit=" examples", disable=not progress)
        with bad_records_named(data, fix=CONVERT_FIX):
            for count, feature in enumerate(bar, 1):
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writers[(count - 1) % shards].write(example.SerializeToString())
        for writer in writers:
            writer.close()
        if count:
            for temporary, final in zip(staged, paths):
                os.replace(temporary, final)
    return count
