"""`garden predict`: run a SavedModel or TFLite artifact's `serving_default` on a file of examples
and print one JSON line per example with every output.

Inputs: a `.jsonl` (one object per line, keyed by the signature's input names) or a `.tsv`/`.csv`
with a header naming them, for any signature; for a signature of one input also a `.npy` array, an
image, or a text file with one example per line."""

import csv
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from garden.errors import GardenError
from garden.export import manifest
from garden.export.tflite import interpreter

TABLES = {".tsv": "\t", ".csv": ","}


def _runner(artifact):
    """(input name -> (shape, numpy dtype), fn(**arrays) -> outputs) of a SavedModel folder or .tflite file."""
    if os.path.isdir(artifact):
        signature = tf.saved_model.load(artifact).signatures["serving_default"]
        specs = {
            n: (s.shape.as_list(), s.dtype.as_numpy_dtype) for n, s in signature.structured_input_signature[1].items()
        }
        return specs, lambda **arrays: {k: v.numpy() for k, v in signature(**arrays).items()}
    if artifact.endswith(".tflite") and os.path.isfile(artifact):
        runner = interpreter(path=artifact).get_signature_runner("serving_default")
        specs = {n: (list(d["shape_signature"]), d["dtype"]) for n, d in runner.get_input_details().items()}
        return specs, lambda **arrays: runner(**{n: np.ascontiguousarray(a) for n, a in arrays.items()})
    raise GardenError(f"{artifact} is neither a SavedModel folder nor a .tflite file; see 'garden export'")


def _is_text(dtype):
    return dtype in (np.bytes_, np.object_, object)


def _records(path):
    """Rows of a .jsonl, .tsv or .csv file as dicts."""
    with open(path, encoding="utf-8", newline="") as f:
        if path.endswith(".jsonl"):
            try:
                return [json.loads(line) for line in f if line.strip()]
            except json.JSONDecodeError as error:
                raise GardenError(f"{path} is not JSON lines ({error})") from error
        return list(csv.DictReader(f, delimiter=TABLES[os.path.splitext(path)[1]]))


def _from_records(path, specs):
    rows = _records(path)
    missing = sorted({n for n in specs if not rows or n not in rows[0]})
    if missing:
        raise GardenError(f"{path} has no field {', '.join(missing)}; the model takes {', '.join(specs)}")
    arrays = {}
    for name, (_, dtype) in specs.items():
        values = [row[name] for row in rows]
        try:
            arrays[name] = np.array(values, dtype=object if _is_text(dtype) else dtype)
        except (ValueError, TypeError) as error:
            raise GardenError(
                f"field '{name}' of {path} does not fit the model's {np.dtype(dtype).name} input"
            ) from error
    return arrays


def _single(path, name, dtype):
    if _is_text(dtype):
        with open(path, encoding="utf-8") as f:
            return np.array([line.rstrip("\n") for line in f if line.strip()], dtype=object)
    if path.endswith(".npy"):
        return np.load(path).astype(dtype)
    try:
        image = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
    except OSError as error:
        raise GardenError(f"cannot read {path} as an image or .npy array ({error})") from error
    return image.astype(dtype)


def _load_inputs(path, specs):
    if not os.path.isfile(path):
        raise GardenError(f"input file not found: {path}; pass a .jsonl, .tsv or .csv file, or see 'garden predict -h'")
    if path.endswith(".jsonl") or os.path.splitext(path)[1] in TABLES:
        return _from_records(path, specs)
    if len(specs) > 1:
        raise GardenError(
            f"the model takes {len(specs)} inputs ({', '.join(sorted(specs))}); pass a .jsonl file (one object per "
            "line with those keys) or a .tsv/.csv file with a header naming them"
        )
    ((name, (_, dtype)),) = specs.items()
    return {name: _single(path, name, dtype)}


def _matches(shape, expected):
    """Whether `shape` fits `expected`, where None (SavedModel) or -1 (TFLite) is any size."""
    return len(shape) == len(expected) and all(e in (None, -1) or e == s for s, e in zip(shape, expected))


def _fit(array, shape, name):
    """Adds missing batch and channel axes; raises a GardenError when the shape cannot fit."""
    if array.dtype == object:
        return array
    expected = tuple(shape[1:])
    for candidate in (array, array[..., None]):
        if _matches(candidate.shape, expected):
            return candidate[None]
        if _matches(candidate.shape[1:], expected):
            return candidate
    want = ", ".join(["N"] + [str(d) for d in expected])
    raise GardenError(f"input has shape {tuple(array.shape)} but the model's input '{name}' expects ({want})")


def _json_value(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    value = np.asarray(value)
    if value.dtype.kind in "SO":
        return [_json_value(v) for v in value] if value.ndim else _json_value(value.item())
    if value.dtype.kind == "f":
        return np.round(value.astype(np.float64), 6).tolist()
    return value.tolist()


def predict(artifact: str, input_path: str) -> list[dict]:
    """One dict per example with every output of the artifact (and `label` for a class id when the
    manifest beside it names the labels)."""
    specs, run = _runner(artifact)
    arrays = {n: _fit(a, specs[n][0], n) for n, a in _load_inputs(input_path, specs).items()}
    outputs = run(**arrays)
    labels = manifest.read(os.path.dirname(os.path.abspath(artifact))).get("labels")
    rows = []
    for i in range(len(next(iter(arrays.values())))):
        row = {name: _json_value(value[i]) for name, value in sorted(outputs.items())}
        if labels and "class_id" in row and "label" not in row:
            row["label"] = labels[row["class_id"]]
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    return "\n".join(json.dumps(row) for row in rows)
