"""Garden's cache folder: `$GARDEN_CACHE`, else ~/.cache/garden (downloaded datasets and checkpoints,
trained tokenizers, the answers of `garden list` and `show`). Imports nothing heavy."""

import os
import pathlib


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("GARDEN_CACHE", pathlib.Path.home() / ".cache" / "garden"))
