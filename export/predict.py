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
from garden.export.requests import RequestError, check_range
from garden.export.tflite import interpreter

TABLES = {".tsv": "\t", ".csv": ","}


def _runner(artifact):
    """(input name -> (shape, numpy dtype), fn(**arrays) -> outputs) of a SavedModel folder or .tflite file."""
    if os.path.isdir(artifact):
        if not os.path.isfile(os.path.join(artifact, "saved_model.pb")):
            inside = [
                p
                for p in ("saved_model", os.path.join("export", "saved_model"))
                if os.path.isdir(os.path.join(artifact, p))
            ]
            hint = f"; did you mean {os.path.join(artifact, inside[0])}?" if inside else "; see 'garden export'"
            raise GardenError(f"{artifact} is a folder but not a SavedModel (no saved_model.pb){hint}")
        signature = tf.saved_model.load(artifact).signatures["serving_default"]
        specs = {
            n: (s.shape.as_list(), s.dtype.as_numpy_dtype) for n, s in signature.structured_input_signature[1].items()
        }
        return specs, lambda **arrays: {k: v.numpy() for k, v in signature(**arrays).items()}
    if artifact.endswith(".tflite") and os.path.isfile(artifact):
        model = interpreter(path=artifact)
        if "serving_default" not in model.get_signature_list():
            raise GardenError(
                f"{artifact} has no serving_default signature (it has {', '.join(model.get_signature_list())}); a "
                "language model's decode_step runs in a sampling loop of your own (README: Language models)"
            )
        runner = model.get_signature_runner("serving_default")
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
        if _is_text(dtype):
            for line, value in enumerate(values, 1):
                if not isinstance(value, str):
                    raise GardenError(
                        f"field '{name}' of {path} is {type(value).__name__} {value!r} in row {line}; the model "
                        "takes text there: give a string"
                    )
        try:
            arrays[name] = np.array(values, dtype=object if _is_text(dtype) else dtype)
        except (ValueError, TypeError) as error:
            raise GardenError(
                f"field '{name}' of {path} does not fit the model's {np.dtype(dtype).name} input"
            ) from error
    return arrays


def _npy(path):
    """A numeric array from a .npy file, or one line on why not."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise GardenError(
            f"cannot read {path} as a numeric .npy array ({' '.join(str(error).split())[:200]})"
        ) from error
    if array.dtype.kind not in "biuf" or array.size == 0:
        raise GardenError(f"{path} holds {array.dtype.name} values of shape {array.shape}; predict takes numbers")
    return array


def _single(path, shape, dtype):
    if _is_text(dtype):
        with open(path, encoding="utf-8") as f:
            return np.array([line.rstrip("\n") for line in f if line.strip()], dtype=object)
    if path.endswith(".npy"):
        return _npy(path)
    try:
        image = Image.open(path).convert("L" if shape[-1] == 1 else "RGB")
    except OSError as error:
        raise GardenError(f"cannot read {path} as an image or .npy array ({error})") from error
    if len(shape) == 4 and shape[1] > 0 and shape[2] > 0:  # any size, resized as the serving signature does
        image = image.resize((shape[2], shape[1]), Image.BILINEAR)
    return (np.asarray(image, np.float32) / 255.0).astype(dtype)


def _load_inputs(path, specs):
    if not os.path.isfile(path):
        raise GardenError(f"input file not found: {path}; pass a .jsonl, .tsv or .csv file, or see 'garden predict -h'")
    try:
        return _read_inputs(path, specs)
    except UnicodeDecodeError as error:
        raise GardenError(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
        ) from error


def _read_inputs(path, specs):
    if path.endswith(".jsonl") or os.path.splitext(path)[1] in TABLES:
        return _from_records(path, specs)
    if len(specs) > 1:
        raise GardenError(
            f"the model takes {len(specs)} inputs ({', '.join(sorted(specs))}); pass a .jsonl file (one object per "
            "line with those keys) or a .tsv/.csv file with a header naming them"
        )
    ((name, (shape, dtype)),) = specs.items()
    return {name: _single(path, shape, dtype)}


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


def _in_range(name, array, bounds):
    """`array` in the value range the model was trained on: integers (uint8 pixels) scaled from 0-255
    to [0, 1]; anything else outside it refused."""
    if array.dtype.kind in "iu" and tuple(bounds) == (0.0, 1.0):
        array = array.astype(np.float32) / 255.0
    try:
        check_range(name, array, bounds)
    except RequestError as error:
        raise GardenError(str(error)) from error
    return array


def predict(artifact: str, input_path: str) -> list[dict]:
    """One dict per example with every output of the artifact (and `label` for a class id when the
    manifest beside it names the labels)."""
    specs, run = _runner(artifact)
    found = manifest.read(os.path.dirname(os.path.abspath(artifact)))
    arrays = {}
    for name, array in _load_inputs(input_path, specs).items():
        if array.ndim and len(array) == 0:
            raise GardenError(f"{input_path} holds no examples; give it one per line (or one array)")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise GardenError(f"input '{name}' holds NaN or infinite values; pass finite numbers")
        if name in found.get("input_ranges", {}):
            array = _in_range(name, array, found["input_ranges"][name])
        arrays[name] = _fit(array.astype(specs[name][1]) if array.dtype != object else array, specs[name][0], name)
    outputs = run(**arrays)
    labels = found.get("labels")
    rows = []
    for i in range(len(next(iter(arrays.values())))):
        row = {name: _json_value(value[i]) for name, value in sorted(outputs.items())}
        if labels and "class_id" in row and "label" not in row:
            row["label"] = labels[row["class_id"]]
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    return "\n".join(json.dumps(row) for row in rows)
