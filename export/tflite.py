"""TFLite export for devices, in four modes, each run in the LiteRT interpreter before it is written.

| mode | weights | activations | parity bound (max |Δ|) |
|---|---|---|---|
| none | float32 | float32 | 1e-4 |
| dynamic | int8 | float32 | 0.1 |
| float16 | float16 | float32 | 1e-2 |
| int8 | int8 | int8, calibrated on training examples | 0.3 |

Quantized modes are judged mainly by accuracy on the held-out split (`max_accuracy_drop`);
their parity bounds only catch a broken conversion.
"""

import os
import tempfile

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from export import saved_model
from export.reference import batched
from export.verify import check
from garden.errors import GardenError
from garden.registry import EXPORTERS

BOUNDS = {"none": 1e-4, "dynamic": 0.1, "float16": 1e-2, "int8": 0.3}
CALIBRATION_EXAMPLES = 256


def filename(mode):
    return f"model_{mode}.tflite"


def convert(saved_model_dir, mode, calibration=None):
    """TFLite flatbuffer bytes of the SavedModel in `mode`; builtin ops only (no Flex)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        converter.representative_dataset = lambda: ([a[i : i + 1] for a in calibration] for i in range(len(calibration[0])))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        return converter.convert()
    except Exception as error:  # the converter raises ConverterError and plain Exceptions
        reason = " ".join(str(error).split())[:300]
        raise GardenError(f"TFLite conversion ({mode}) failed: {reason}") from error


def run_tflite(content, names, inputs):
    """Runs the `serving_default` signature of a TFLite model on `inputs` (arrays in the order of `names`)."""
    runner = Interpreter(model_content=content).get_signature_runner("serving_default")
    return batched(lambda *a: runner(**{n: np.ascontiguousarray(x) for n, x in zip(names, a)}), inputs)


@EXPORTERS.register("tflite")
def export_tflite(reference, export_dir, quantize="none", max_error=None, max_accuracy_drop=1.0):
    """Writes `export_dir/model_<quantize>.tflite` if it passes parity and accuracy; returns the manifest."""
    if quantize not in BOUNDS:
        raise GardenError(f"unknown --quantize '{quantize}'; choose from: {', '.join(BOUNDS)}")
    bound = BOUNDS[quantize] if max_error is None else max_error
    names = list(reference.input_specs)
    calibration = None
    if quantize == "int8":
        train = reference.task.load(reference.task.config.train_data).take(CALIBRATION_EXAMPLES)
        calibration = reference.model_inputs(train)
    with tempfile.TemporaryDirectory(dir=export_dir, prefix=".tflite-") as staging:
        content = convert(saved_model.write(reference, os.path.join(staging, "saved_model")), quantize, calibration)
    error, accuracy, drop = reference.judge(run_tflite(content, names, reference.inputs))
    check(f"TFLite {quantize}", error, bound, drop, max_accuracy_drop)
    target = os.path.join(export_dir, filename(quantize))
    with open(target + ".tmp", "wb") as f:
        f.write(content)
    os.replace(target + ".tmp", target)
    return reference.record(export_dir, filename(quantize), target, error, bound, accuracy, quantize=quantize)
