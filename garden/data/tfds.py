"""TensorFlow Datasets that a user prepared under `tfds_data_dir`, streamed from their TFRecord files.

Nothing is downloaded: a dataset that is not prepared there is refused with how to prepare it. The
split's shard files and their record counts come from the dataset's own info, so a resumed run
needs no counting pass; images stay encoded until the task decodes them (TFDS's `SkipDecoding`).
"""

import os

import tensorflow as tf

from garden.data.streams import Stream
from garden.errors import GardenError
from garden.registry import DATASETS


def _builder(name, data_dir):
    import tensorflow_datasets as tfds  # imported only when a TFDS dataset is read: it is slow to import

    where = data_dir or "~/tensorflow_datasets"
    prepare = (
        f"prepare it where there is internet ('tfds build {name} --data_dir DIR', or "
        f"tfds.builder('{name}', data_dir=DIR).download_and_prepare()), copy DIR here and set tfds_data_dir=DIR"
    )
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise GardenError(
            f"TFDS dataset '{name}' is neither prepared under {where} nor known to TFDS; {prepare}"
        ) from None
    if not builder.is_prepared():
        raise GardenError(f"TFDS dataset '{name}' is not prepared under {where}; {prepare}")
    return builder, tfds.decode.SkipDecoding()


@DATASETS.register("tfds")
def tfds_dataset(config, label_names=None) -> Stream:
    """Image classification data: `image_key` and `label_key` (TFDS's supervised keys, or image and
    label, when `tfds_as_supervised` is set or `image_key` is no feature), split `tfds_split` (or `split`)."""
    data_dir = os.path.expanduser(config.tfds_data_dir) if config.tfds_data_dir else None
    builder, skip_decoding = _builder(config.tfds_name, data_dir)
    info, split = builder.info, config.tfds_split or config.split or "train"
    if split not in info.splits:
        raise GardenError(
            f"TFDS dataset '{config.tfds_name}' has no split '{split}'; choose from {', '.join(info.splits)}"
        )
    if info.file_format is not None and info.file_format.value != "tfrecord":
        raise GardenError(
            f"TFDS dataset '{config.tfds_name}' is stored as {info.file_format.value}; Garden streams TFRecord files: "
            "prepare it with file_format='tfrecord'"
        )
    features = info.features
    image_key, label_key = config.image_key, config.label_key
    if config.tfds_as_supervised or image_key not in features:  # TFDS's own keys
        image_key, label_key = info.supervised_keys or ("image", "label")
    missing = [key for key in (image_key, label_key) if key not in features]
    if missing:
        raise GardenError(
            f"TFDS dataset '{config.tfds_name}' has no feature '{missing[0]}' (it has {', '.join(features)}); "
            "set image_key and label_key, or tfds_as_supervised=true"
        )
    decoders = {image_key: skip_decoding}

    def parse(file_id, record):
        example = features.deserialize_example(record, decoders=decoders)
        return {"image_bytes": example[image_key]}, tf.cast(example[label_key], tf.int64)

    names = list(label_names) if label_names else getattr(features[label_key], "names", None)
    split_info = info.splits[split]
    files = [os.fspath(path) for path in split_info.filepaths]
    return Stream(files, tf.data.TFRecordDataset, parse, names, config, counts=list(split_info.shard_lengths))
