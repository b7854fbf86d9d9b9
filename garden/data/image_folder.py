"""A folder of images in class subfolders (`ROOT/CLASS/NAME.jpg`), read as a stream.

Class names sort into ids, as Keras' `image_dataset_from_directory` does; JPEG, PNG, GIF and BMP
files of any size are decoded in the pipeline by the task.
"""

import os

import tensorflow as tf

from garden.data.streams import Stream
from garden.errors import GardenError
from garden.registry import DATASETS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


@DATASETS.register("image_folder")
def image_folder(config, label_names=None) -> Stream:
    root = config.input_path
    if not os.path.isdir(root):
        raise GardenError(f"image folder not found: {root}; set input_path to a folder of class subfolders")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise GardenError(f"{root} has no class subfolders; put each class's images in ROOT/CLASS_NAME/")
    names = list(label_names) if label_names else classes
    unknown = sorted(set(classes) - set(names))
    if unknown:
        raise GardenError(f"{root} has classes the training data does not ({', '.join(unknown[:5])}); remove them")
    files, labels = [], []
    for name in classes:
        folder = os.path.join(root, name)
        images = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
        files += [os.path.join(folder, f) for f in images]
        labels += [names.index(name)] * len(images)
    if not files:
        raise GardenError(f"{root} has class subfolders but no images ({', '.join(IMAGE_EXTENSIONS)})")
    label_of_file = tf.constant(labels, tf.int64)

    def parse(file_id, path):
        return {"image_bytes": tf.io.read_file(path)}, tf.gather(label_of_file, file_id)

    return Stream(files, tf.data.Dataset.from_tensors, parse, names, config, counts=[1] * len(files))
