"""`garden predict`: run a SavedModel or TFLite artifact's `serving_default` on a file of examples
and print one JSON line per example with every output.

Inputs: a `.jsonl` (one object per line, keyed by the signature's input names) or a `.tsv`/`.csv`
with a header naming them, for any signature; for a signature of one input also a `.npy` array, an
image, or a text file with one example per line.

An image file gets the answer that the same bytes get from the SavedModel's `serving_bytes` signature
(and so from the REST API): predict feeds it its bytes, or, for a model without it (TFLite), decodes
them with the function that builds that signature's decoding, sized as manifest.json says. A file the
model's decoding would misread or fail on, or that declares more pixels than Pillow's decompression-bomb
limit (which that decoding refuses too), is refused from its header in one line."""

import csv
import functools
import io
import json
import os
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image

from garden.errors import GardenError
from garden.export import manifest
from garden.export.requests import RequestError, check_range, model_error
from garden.export.tflite import interpreter
from garden.tasks.image_classification import MAX_PIXELS, serving_image

TABLES = {".tsv": "\t", ".csv": ","}
IMAGE_BYTES = "image_bytes"  # the input of an image model's signature that decodes images in its graph
DECODED = {"PNG", "JPEG", "MPO", "GIF", "BMP", "WEBP"}  # Pillow's names of what tf.io.decode_image reads


def _runner(artifact):
    """(input name -> (shape, numpy dtype), fn(**arrays) -> outputs, fn(encoded images) -> outputs of the
    signature decoding them in the graph, or None) of a SavedModel folder or .tflite file."""
    if os.path.isdir(artifact):
        if not os.path.isfile(os.path.join(artifact, "saved_model.pb")):
            inside = [
                p
                for p in ("saved_model", os.path.join("export", "saved_model"))
                if os.path.isdir(os.path.join(artifact, p))
            ]
            hint = f"; did you mean {os.path.join(artifact, inside[0])}?" if inside else "; see 'garden export'"
            raise GardenError(f"{artifact} is a folder but not a SavedModel (no saved_model.pb){hint}")
        signatures = tf.saved_model.load(artifact).signatures
        signature = signatures["serving_default"]
        specs = {
            n: (s.shape.as_list(), s.dtype.as_numpy_dtype) for n, s in signature.structured_input_signature[1].items()
        }
        decoding = [f for f in signatures.values() if list(f.structured_input_signature[1]) == [IMAGE_BYTES]]
        run_bytes = (lambda data: _numpy(decoding[0](**{IMAGE_BYTES: tf.constant(data)}))) if decoding else None
        return specs, lambda **arrays: _numpy(signature(**arrays)), run_bytes
    if artifact.endswith(".tflite") and os.path.isfile(artifact):
        model = interpreter(path=artifact)
        if "serving_default" not in model.get_signature_list():
            raise GardenError(
                f"{artifact} has no serving_default signature (it has {', '.join(model.get_signature_list())}); a "
                "language model's decode_step runs in a sampling loop of your own (README: Language models)"
            )
        runner = model.get_signature_runner("serving_default")
        specs = {n: (list(d["shape_signature"]), d["dtype"]) for n, d in runner.get_input_details().items()}
        return specs, lambda **arrays: runner(**{n: np.ascontiguousarray(a) for n, a in arrays.items()}), None
    raise GardenError(f"{artifact} is neither a SavedModel folder nor a .tflite file; see 'garden export'")


def _numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


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


def _single(path, dtype):
    if _is_text(dtype):
        with open(path, encoding="utf-8") as f:
            return np.array([line.rstrip("\n") for line in f if line.strip()], dtype=object)
    return _npy(path)


def _is_image_file(path, specs):
    """Whether `path` is read as an image file: one numeric input, and neither a table nor .npy."""
    if len(specs) != 1 or os.path.splitext(path)[1] in (".npy", ".jsonl", *TABLES):
        return False
    return not _is_text(next(iter(specs.values()))[1])


def _check_header(path, data):
    """Refuses in one line an image that the model's decoding would misread or fail on, or that declares
    more than MAX_PIXELS pixels (over all of a GIF's frames, which giflib reads whole), before any
    decoding: Pillow reads the header only."""

    def too_large(frames=1):
        where = f" in its {frames} frames" if frames > 1 else ""
        return GardenError(
            f"{path} declares more than {MAX_PIXELS:,} pixels{where} (Pillow's decompression-bomb limit), which "
            "predict does not decode; save it as a smaller image"
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a bomb is refused below; Pillow warns of odd headers too
        try:
            with Image.open(io.BytesIO(data)) as image:
                kind, mode, pixels = image.format, image.mode, image.width * image.height
                frames = image.n_frames if kind == "GIF" else 1
        except Image.DecompressionBombError as error:
            raise too_large() from error
        except Exception as error:  # Pillow's format plugins raise many kinds of error on a malformed header
            reason = "empty file" if not data else "not a PNG, JPEG, GIF, BMP or WebP image"
            if not isinstance(error, Image.UnidentifiedImageError):
                reason = " ".join(str(error).split())[:200] or type(error).__name__
            raise GardenError(
                f"cannot read {path} as an image or .npy array ({reason}); save it as PNG, JPEG, GIF, BMP or WebP"
            ) from error
    if pixels * frames > MAX_PIXELS:
        raise too_large(frames)
    if kind not in DECODED:
        raise GardenError(f"{path} is a {kind} image, which the model's decoding does not read; save it as PNG")
    if kind == "BMP" and mode not in ("L", "RGB", "RGBA"):
        raise GardenError(
            f"{path} is a {'1-bit' if mode == '1' else 'palette'} BMP, whose colors the model's decoding misreads; "
            "save it as PNG"
        )


@functools.cache
def _decoding(height, width, channels, center_crop_fraction):
    """`serving_image` for one size, traced once into a graph, as the signature runs it."""
    return tf.function(lambda data: serving_image(data, height, width, channels, center_crop_fraction))


def _image_outputs(path, specs, run, run_bytes, preprocessing):
    """The outputs for image file `path`: its bytes through the signature that decodes them in the
    graph, or decoded with that signature's function as `preprocessing` (manifest.json) sizes them."""
    ((name, (shape, dtype)),) = specs.items()
    if len(shape) != 4 or shape[-1] not in (1, 3):
        want = ", ".join(["N"] + [str(d) for d in shape[1:]])
        raise GardenError(f"the model's input '{name}' takes ({want}) arrays, not images; pass a .npy array")
    with open(path, "rb") as f:
        data = f.read()
    _check_header(path, data)
    if run_bytes is None and not preprocessing:
        raise GardenError(
            f"no manifest.json beside the model says how its images are cropped and resized; predict it "
            f"from its export folder, or pass a .npy array of {name} inputs"
        )
    try:
        if run_bytes:
            return run_bytes([data])
        size = preprocessing["height"], preprocessing["width"], int(shape[-1]), preprocessing["center_crop_fraction"]
        image = _decoding(*size)(tf.constant(data)).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise GardenError(f"cannot decode {path} ({model_error(error)}); save it again as PNG or JPEG") from error
    return run(**{name: image[None].astype(dtype)})


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
    ((name, (_, dtype)),) = specs.items()
    return {name: _single(path, dtype)}


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


def _arrays(input_path, specs, found):
    """The model's inputs from a file of examples, checked and shaped."""
    arrays = {}
    for name, array in _load_inputs(input_path, specs).items():
        if array.ndim and len(array) == 0:
            raise GardenError(f"{input_path} holds no examples; give it one per line (or one array)")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise GardenError(f"input '{name}' holds NaN or infinite values; pass finite numbers")
        if name in found.get("input_ranges", {}):
            array = _in_range(name, array, found["input_ranges"][name])
        arrays[name] = _fit(array.astype(specs[name][1]) if array.dtype != object else array, specs[name][0], name)
    return arrays


def predict(artifact: str, input_path: str) -> list[dict]:
    """One dict per example with every output of the artifact (and `label` for a class id when the
    manifest beside it names the labels)."""
    specs, run, run_bytes = _runner(artifact)
    found = manifest.read(os.path.dirname(os.path.abspath(artifact)))
    if os.path.isfile(input_path) and _is_image_file(input_path, specs):
        preprocessing = found.get("preprocessing", {}).get(next(iter(specs)))
        outputs = _image_outputs(input_path, specs, run, run_bytes, preprocessing)
    else:
        outputs = run(**_arrays(input_path, specs, found))
    labels = found.get("labels")
    rows = []
    for i in range(len(next(iter(outputs.values())))):
        row = {name: _json_value(value[i]) for name, value in sorted(outputs.items())}
        if labels and "class_id" in row and "label" not in row:
            row["label"] = labels[row["class_id"]]
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    return "\n".join(json.dumps(row) for row in rows)
