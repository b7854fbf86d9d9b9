"""`garden predict`: run a SavedModel or TFLite artifact on a .npy array, an image, or (for models
that take text) a text file with one example per line."""

import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from garden.errors import GardenError
from garden.export import manifest
from garden.export.tflite import interpreter


def _load_input(path, dtype):
    if not os.path.isfile(path):
        raise GardenError(f"input file not found: {path}; pass a .npy array, an image, or a text file")
    if dtype in (np.bytes_, np.object_, object):
        with open(path, encoding="utf-8") as f:
            return np.array([line.rstrip("\n") for line in f if line.strip()], dtype=object)
    if path.endswith(".npy"):
        return np.load(path).astype(dtype)
    try:
        image = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
    except OSError as error:
        raise GardenError(f"cannot read {path} as an image or .npy array ({error})") from error
    return image.astype(dtype)


def _fit(array, shape, name):
    """Adds missing batch and channel axes; raises a GardenError when the shape cannot fit."""
    if array.dtype == object:
        return array
    expected = tuple(shape[1:])
    for candidate in (array, array[..., None]):
        if candidate.shape == expected:
            return candidate[None]
        if candidate.shape[1:] == expected:
            return candidate
    want = ", ".join(["N"] + [str(d) for d in expected])
    raise GardenError(f"input has shape {tuple(array.shape)} but the model's input '{name}' expects ({want})")


def _runner(artifact):
    """(input name, shape, dtype, fn(array) -> outputs) of a SavedModel folder or .tflite file."""
    if os.path.isdir(artifact):
        signature = tf.saved_model.load(artifact).signatures["serving_default"]
        ((name, spec),) = signature.structured_input_signature[1].items()
        return (
            name,
            spec.shape.as_list(),
            spec.dtype.as_numpy_dtype,
            lambda x: {k: v.numpy() for k, v in signature(**{name: x}).items()},
        )
    if artifact.endswith(".tflite") and os.path.isfile(artifact):
        runner = interpreter(path=artifact).get_signature_runner("serving_default")
        ((name, detail),) = runner.get_input_details().items()
        return name, list(detail["shape_signature"]), detail["dtype"], lambda x: runner(**{name: x})
    raise GardenError(f"{artifact} is neither a SavedModel folder nor a .tflite file; see 'garden export'")


def predict(artifact, input_path):
    """Returns one dict per example: class id, label and probabilities."""
    name, shape, dtype, run = _runner(artifact)
    outputs = run(_fit(_load_input(input_path, dtype), shape, name))
    labels = manifest.read(os.path.dirname(os.path.abspath(artifact))).get("labels")
    rows = []
    for i, class_id in enumerate(np.asarray(outputs["class_id"]).reshape(-1)):
        row = {"class_id": int(class_id), "probabilities": np.round(outputs["probabilities"][i], 6).tolist()}
        if labels:
            row["label"] = labels[int(class_id)]
        rows.append(row)
    return rows


def format_rows(rows):
    return "\n".join(json.dumps(row) for row in rows)
