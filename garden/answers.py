"""`garden list`, `garden models` and `garden show NAME` without importing TensorFlow.

Their output depends only on the registered experiments, so it is kept in Garden's cache folder
under a fingerprint of everything that could change it: the files of Garden's packages and of each
installed plugin's module, and the installed versions of Garden and the libraries whose defaults
its configs read. The first `list` or `show` after a change pays one TensorFlow import and answers
for every experiment at once; the rest read one JSON file. `show` with `--config`, `--set` or
`--imports` is always resolved afresh.
"""

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from collections.abc import Callable

from garden.cache import cache_dir

PACKAGES = ("garden", "garden.experiments", "garden.export")
VERSIONED = ("keras", "keras-hub", "tf-models-official", "tensorflow")
SUFFIXES = (".py", ".yaml")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _files(package: str) -> list[str]:
    """The source files of `package` (a folder, walked) or of a plugin module (its one file)."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        return []
    if spec.submodule_search_locations is None:
        return [spec.origin] if spec.origin else []
    found = []
    for root in spec.submodule_search_locations:
        for folder, _, names in os.walk(root):
            found += [os.path.join(folder, n) for n in names if n.endswith(SUFFIXES)]
    return found


def fingerprint() -> str:
    """A digest of the versions and source files that `list` and `show` depend on."""
    digest = hashlib.sha256()
    for distribution in VERSIONED:
        digest.update(f"{distribution}={_version(distribution)};".encode())
    plugins = [entry.value.split(":")[0] for entry in importlib.metadata.entry_points(group="garden.plugins")]
    for package in sorted(set(PACKAGES) | set(plugins)):
        for path in sorted(_files(package)):
            stat = os.stat(path)
            digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size};".encode())
    return digest.hexdigest()[:24]


def answer(key: str, build: Callable[[], dict[str, str]]) -> str | None:
    """The cached output for `key` ("list" or "show NAME"), computing every answer with `build` when
    the cache is stale; None when `build` has no such key (an unknown experiment: the caller's own
    path then explains it)."""
    folder = cache_dir() / "answers"
    path = folder / f"{fingerprint()}.json"
    try:
        answers = json.loads(path.read_text())
    except (OSError, ValueError):
        answers = build()
        folder.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps(answers))
        os.replace(staging, path)
        for old in folder.glob("*.json"):  # answers for older sources
            if old != path:
                old.unlink(missing_ok=True)
    return answers.get(key)
