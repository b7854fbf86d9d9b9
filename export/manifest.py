"""`manifest.json` beside the artifacts: inputs, outputs, labels, and per artifact its size, parity and accuracy."""

import json
import os


def path(export_dir: str) -> str:
    return os.path.join(export_dir, "manifest.json")


def read(export_dir: str) -> dict:
    if not os.path.isfile(path(export_dir)):
        return {"artifacts": {}}
    with open(path(export_dir)) as f:
        return json.load(f)


def record(export_dir: str, header: dict, name: str, entry: dict) -> None:
    """Adds or replaces artifact `name`, writing the file atomically."""
    manifest = {**read(export_dir), **header}
    manifest.setdefault("artifacts", {})[name] = entry
    temporary = path(export_dir) + ".tmp"
    with open(temporary, "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(temporary, path(export_dir))
    return manifest


def size_bytes(target: str) -> int:
    if os.path.isfile(target):
        return os.path.getsize(target)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(target) for f in files)
