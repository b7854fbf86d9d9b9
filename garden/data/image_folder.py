"""A folder of images in class subfolders (`ROOT/CLASS/NAME.jpg`, or deeper: `ROOT/CLASS/ANY/NAME.jpg`),
read as a stream.

Class names sort into ids, as Keras' `image_dataset_from_directory` does, and a class's images are
found in its subfolders too, as Keras finds them. Hidden files and folders (`.ipynb_checkpoints`,
AppleDouble `._x.png`, a command's `.staging-*` folder) are not data and are skipped. A training
folder's empty class would take an id no example teaches, and is refused. JPEG, PNG, GIF and BMP
files of any size are decoded in the pipeline by the task.
"""

import os

import tensorflow as tf

from garden.data.streams import Stream
from garden.errors import GardenError
from garden.registry import DATASETS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


def visible(name: str) -> bool:
    """Whether a file or folder name is data: hidden ones (a leading dot) are not."""
    return not name.startswith(".")


def class_folders(root: str) -> list[str]:
    """The sorted names of `root`'s visible subfolders."""
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and visible(entry.name))


def images_in(folder: str) -> list[str]:
    """The visible image files under `folder`, at any depth, in a fixed order."""
    found = []
    for parent, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if visible(f))
        found += [os.path.join(parent, f) for f in sorted(files) if visible(f) and f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


@DATASETS.register("image_folder")
def image_folder(config, label_names=None) -> Stream:
    root = config.input_path
    if not os.path.isdir(root):
        raise GardenError(f"image folder not found: {root}; set input_path to a folder of class subfolders")
    classes = class_folders(root)
    if not classes:
        raise GardenError(f"{root} has no class subfolders; put each class's images in ROOT/CLASS_NAME/")
    names = list(label_names) if label_names else classes
    unknown = sorted(set(classes) - set(names))
    if unknown:
        raise GardenError(f"{root} has classes the training data does not ({', '.join(unknown[:5])}); remove them")
    files, labels = [], []
    for name in classes:
        images = images_in(os.path.join(root, name))
        files += images
        labels += [names.index(name)] * len(images)
    if not files:
        raise GardenError(f"{root} has class subfolders but no images ({', '.join(IMAGE_EXTENSIONS)})")
    empty = [name for name in classes if name not in {names[label] for label in labels}]
    if empty and not label_names:
        raise GardenError(
            f"{root} has class folders without images ({', '.join(empty[:5])}); each would take a class id that no "
            "example teaches: add their images or remove the folders"
        )
    label_of_file = tf.constant(labels, tf.int64)

    def parse(file_id, path):
        return {"image_bytes": tf.io.read_file(path)}, tf.gather(label_of_file, file_id)

    return Stream(files, tf.data.Dataset.from_tensors, parse, names, config, counts=[1] * len(files))
