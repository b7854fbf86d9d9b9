"""TFLite export for devices in five modes, each run in the LiteRT interpreter and judged by
held-out accuracy before it is written.

| mode | weights | activations | parity bound (max |Δ|) |
|---|---|---|---|
| none | float32 | float32 | 1e-4 |
| dynamic | int8 | float32 (quantized on the fly) | 0.1 |
| float16 | float16 | float32 | 1e-2 |
| int8 | int8 | int8, calibrated on training examples | 0.3 |
| 16x8 | int8 | int16, calibrated on training examples | 0.1 |

Quantized modes are judged mainly by accuracy on the held-out split (`max_accuracy_drop`); their
parity bounds only catch a broken conversion. Text models take raw strings: tensorflow-text's
tokenizer ops are TFLite custom ops, which a runtime adds with `tensorflow_text.tflite_registrar`
(the manifest lists them). A model that would need any other TensorFlow op (Flex) is refused.
"""

import contextlib
import os
import re
import tempfile

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import InterpreterWithCustomOps
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow_text import tflite_registrar

from export import saved_model
from export.reference import DEFAULT, batched
from export.verify import Refused, median_latency_ms, refusal
from garden.errors import GardenError
from garden.registry import EXPORTERS

BOUNDS = {"none": 1e-4, "dynamic": 0.1, "float16": 1e-2, "int8": 0.3, "16x8": 0.1}
CALIBRATION_EXAMPLES = 256
REGISTRAR = "tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS"
THREADS = os.cpu_count()


def filename(mode):
    return f"model_{mode}.tflite"


def interpreter(content=None, path=None):
    """A LiteRT interpreter with tensorflow-text's custom ops, its tensors allocated."""
    model = InterpreterWithCustomOps(
        custom_op_registerers=tflite_registrar.SELECT_TFTEXT_OPS, model_content=content, model_path=path, num_threads=THREADS
    )
    model.allocate_tensors()
    return model


def custom_ops(content):
    """Names of the custom ops that a TFLite flatbuffer needs."""
    model = schema.Model.GetRootAsModel(content, 0)
    codes = (model.OperatorCodes(i).CustomCode() for i in range(model.OperatorCodesLength()))
    return sorted({code.decode() for code in codes if code})


def _converter(saved_model_dir, signature, mode, calibration):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = True  # tensorflow-text's tokenizers; anything else is refused after conversion
    converter.target_spec._experimental_custom_op_registerers = list(tflite_registrar.SELECT_TFTEXT_OPS)  # calibration runs them
    if mode != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in ("int8", "16x8"):
        count = len(calibration[0])
        converter.representative_dataset = lambda: ([a[i : i + 1] for a in calibration] for i in range(count))
    if mode == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode == "16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS
        ]
    return converter


def convert(saved_model_dir, signature, mode, calibration=None):
    """TFLite flatbuffer bytes of one SavedModel signature in `mode`."""
    try:
        return _converter(saved_model_dir, signature, mode, calibration).convert()
    except Exception as error:  # the converter raises ConverterError and plain Exceptions
        reason = " ".join(str(error).split())[:300]
        raise Refused(f"TFLite {mode} conversion failed: {reason}", filename(mode), {"quantize": mode}) from error


@contextlib.contextmanager
def builtins_and_text_ops_only(mode, signature):
    """Turns the interpreter's error for an op that it cannot resolve (when a node is prepared, which
    for ops inside a loop is when it first runs) into a refusal naming the op."""
    try:
        yield
    except RuntimeError as error:
        missing = re.search(r"unresolved custom op: ([\w>]+)", str(error))
        if not missing:
            raise
        raise GardenError(
            f"TFLite {mode} refused: signature '{signature}' needs TensorFlow op {missing.group(1)}, which is neither a "
            "TFLite builtin nor a tensorflow-text custom op, so it would need Flex (Select TF ops), which no interpreter "
            "here can verify; nothing was written (export another --signature, or serve this one as a SavedModel)"
        ) from error


def tflite_runner(content=None, path=None, signature=DEFAULT):
    """fn(**named arrays) -> outputs of one signature of a TFLite model."""
    runner = interpreter(content, path).get_signature_runner(signature)
    return lambda **arrays: runner(**{n: np.ascontiguousarray(a) for n, a in arrays.items()})


def run_tflite(content, signature, names, inputs):
    """Runs `signature` of a TFLite model on `inputs` (arrays in the order of `names`)."""
    runner = tflite_runner(content, signature=signature)
    return batched(lambda *arrays: runner(**dict(zip(names, arrays))), inputs)


@EXPORTERS.register("tflite")
def export_tflite(reference, export_dir, quantize="none", signature=DEFAULT, max_error=None, max_accuracy_drop=1.0):
    """Writes `export_dir/model_<quantize>.tflite` if it passes parity and accuracy; returns the manifest."""
    if quantize not in BOUNDS:
        raise GardenError(f"unknown --quantize '{quantize}'; choose from: {', '.join(BOUNDS)}")
    if signature not in reference.signatures:
        raise GardenError(f"this model has no signature '{signature}'; choose from: {', '.join(reference.signatures)}")
    bound = BOUNDS[quantize] if max_error is None else max_error
    names = list(reference.signatures[signature].specs)
    calibration = None
    if quantize in ("int8", "16x8"):
        train = reference.task.load(reference.task.config.train_data, reference.examples.label_names)
        calibration, _ = reference.signature_inputs(signature, train.take(CALIBRATION_EXAMPLES))
    with tempfile.TemporaryDirectory(dir=export_dir, prefix=".tflite-") as staging:
        content = convert(saved_model.write(reference, os.path.join(staging, "saved_model")), signature, quantize, calibration)
    inputs = reference.inputs[signature]
    with builtins_and_text_ops_only(quantize, signature):
        outputs = run_tflite(content, signature, names, inputs)
    error, accuracy, drop = reference.judge(signature, outputs)
    runner = tflite_runner(content, signature=signature)
    measured = {
        "signature": signature,
        "quantize": quantize,
        "size_bytes": len(content),
        "latency_ms": median_latency_ms(lambda *arrays: runner(**dict(zip(names, arrays))), inputs),
        "threads": THREADS,
        "accuracy": accuracy,
        "accuracy_drop": drop,
        "custom_ops": custom_ops(content),
    }
    if measured["custom_ops"]:
        measured["op_registerers"] = REGISTRAR
    reason = refusal(f"TFLite {quantize}", error, bound, drop, max_accuracy_drop)
    if reason:
        raise Refused(reason, filename(quantize), {**measured, "max_abs_error": error, "error_bound": bound})
    target = os.path.join(export_dir, filename(quantize))
    with open(target + ".tmp", "wb") as f:
        f.write(content)
    os.replace(target + ".tmp", target)
    return reference.record(export_dir, filename(quantize), target, error, bound, accuracy, **measured)
