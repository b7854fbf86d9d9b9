"""`garden data convert`: any image reader's examples -> sharded TFRecord files with Model Garden's keys.

Example i goes to shard i mod N (so every shard holds every class of a folder sorted by class); the
shards are written beside their final names and renamed once all are whole, so a failed or
interrupted conversion leaves no partial file behind.
"""

import os
import tempfile

import numpy as np
import tensorflow as tf
import tqdm

from garden.config import DataConfig
from garden.data.examples import Examples
from garden.data.streams import Stream, raw_examples
from garden.errors import GardenError
from garden.registry import DATASETS

_FORMATS = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpeg", b"GIF8": "gif", b"BM": "bmp"}


def shard_paths(out: str, shards: int) -> list[str]:
    """`out` with its `*` (or, lacking one, its end) numbered as Model Garden's shards are: 00000-of-00004."""
    if out.count("*") > 1:
        raise GardenError(f"--out '{out}' has more than one '*'; use one, where the shard number goes")
    stem, star, tail = out.partition("*")
    return [f"{stem}{i:05d}-of-{shards:05d}{tail}" if star else f"{out}-{i:05d}-of-{shards:05d}" for i in range(shards)]


def _image_format(data: bytes) -> str:
    return next((name for magic, name in _FORMATS.items() if data.startswith(magic)), "")


def _encoded_images(examples: Examples):
    """(PNG bytes, label) of in-memory float images in [0, 1], 8 bits per channel."""
    if set(examples.features) != {"image"}:
        raise GardenError(f"only image data converts to TFRecord so far; this data has {sorted(examples.features)}")
    for image, label in zip(examples.features["image"], examples.labels):
        yield tf.io.encode_png(np.round(np.asarray(image) * 255).astype(np.uint8)).numpy(), int(label)


def _example(data: bytes, label: int, label_names) -> bytes:
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_image_format(data).encode()])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    if label_names:
        text = str(label_names[label]).encode()
        feature["image/class/text"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def convert(source: str, out: str, shards: int, split: str = "", progress: bool = True) -> dict:
    """Writes the examples of `source` (a catalog dataset name, a folder of class subfolders, or
    TFRecord files) to `shards` TFRecord files named by `out`; returns a summary."""
    if shards < 1:
        raise GardenError(f"--shards must be 1 or more, got {shards}")
    if source in DATASETS:
        config = DataConfig(dataset=source, split=split or "train")
    else:
        config = DataConfig(dataset="image_folder" if os.path.isdir(source) else "tfrecord", input_path=source)
    data = DATASETS.get(config.dataset)(config, None)
    records = raw_examples(data) if isinstance(data, Stream) else _encoded_images(data)
    paths = shard_paths(out, shards)
    existing = [p for p in paths if os.path.exists(p)]
    if existing:
        raise GardenError(f"{existing[0]} exists; remove it or choose another --out")
    folder = os.path.dirname(os.path.abspath(paths[0]))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".convert-") as staging:
        staged = [os.path.join(staging, os.path.basename(p)) for p in paths]
        writers = [tf.io.TFRecordWriter(p) for p in staged]
        count = 0
        total = len(data) if isinstance(data, Examples) or data.counts else None  # a TFRecord count costs a read
        bar = tqdm.tqdm(records, total=total, unit=" examples", disable=not progress)
        for count, (image, label) in enumerate(bar, 1):
            writers[(count - 1) % shards].write(_example(image, label, data.label_names))
        for writer in writers:
            writer.close()
        if not count:
            raise GardenError(f"{source} has no examples to convert")
        for temporary, final in zip(staged, paths):
            os.replace(temporary, final)
    return {"examples": count, "shards": paths, "labels": len(data.label_names or [])}
