"""TFLite export for devices in five modes, each converted from the export's one SavedModel, run
in the LiteRT interpreter and judged by the run's reference (`reference.py`: the task's quality,
accuracy for a classifier, on the held-out split) before it is written.

| mode | weights | activations | judged by |
|---|---|---|---|
| none | float32 | float32 | max |Δ| ≤ 1e-4 and quality |
| float16 | float16 | float32 | max |Δ| ≤ 1e-2 and quality |
| dynamic | int8 | float32 (quantized on the fly) | quality |
| int8 | int8 | int8 calibrated on training examples (some op types float32, below) | quality |
| 16x8 | int8 | int16 calibrated on training examples | quality |

A quantized mode is judged by its quality drop (`--max-quality-drop`, in points) and its max |Δ| is
reported, not bounded (pass `--max-error` to bound it): one borderline example can move a probability
by 0.6 without changing accuracy. int8 first quantizes every op. If that misses the bounds, it
quantizes again keeping the op types in `FLOAT_OPS` in float32: a transformer's attention scores
share one int8 scale with the -1e9 padding mask, which leaves no step for the real scores, and its
LayerNorm statistics and residual stream carry outlier channels (squares up to 5e4 in MiniLM), and
the position embeddings of a static-length (raw-string) graph come out of int8 wrong. The matmuls and
embedding lookups stay int8; the manifest's `float_ops` lists the op types kept.

Text models take raw strings: tensorflow-text's tokenizer ops are TFLite custom ops, which a runtime
adds with `tensorflow_text.tflite_registrar` (the manifest lists them). A model that would need any
other TensorFlow op (Flex) is refused.
"""

import contextlib
import functools
import os
import re
import warnings
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import InterpreterWithCustomOps
from tensorflow.lite.python import convert as lite_convert
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow_text import tflite_registrar

from garden import native_output
from garden.errors import GardenError
from garden.export.exporting import Job
from garden.export.reference import ExportReference
from garden.export.verify import Refused
from garden.registry import EXPORTERS

CALIBRATION_EXAMPLES = 256
REGISTRAR = "tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS"
warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")  # the converter's own
THREADS = os.cpu_count()
FLOAT_OPS = (
    "BATCH_MATMUL",
    "TRANSPOSE",
    "SELECT_V2",
    "SOFTMAX",  # attention scores and the padding mask
    "MEAN",
    "SQUARED_DIFFERENCE",
    "RSQRT",
    "ADD",
    "MUL",
    "GELU",  # LayerNorm and the residual stream
    "BROADCAST_TO",  # position embeddings: with a static length they came out of int8 off by their own size
)


def filename(mode: str) -> str:
    return f"model_{mode}.tflite"


def interpreter(content=None, path=None):
    """A LiteRT interpreter with tensorflow-text's custom ops, its tensors allocated."""
    with native_output.quiet():  # XNNPACK's INFO line
        model = InterpreterWithCustomOps(
            custom_op_registerers=tflite_registrar.SELECT_TFTEXT_OPS,
            model_content=content,
            model_path=path,
            num_threads=THREADS,
        )
        model.allocate_tensors()
    return model


def custom_ops(content: bytes) -> list[str]:
    """Names of the custom ops that a TFLite flatbuffer needs."""
    model = schema.Model.GetRootAsModel(content, 0)
    codes = (model.OperatorCodes(i).CustomCode() for i in range(model.OperatorCodesLength()))
    return sorted({code.decode() for code in codes if code})


def _calibration_array(array):
    """Strings as fixed-width bytes: the calibrator garbles object arrays (R8 texts reached the model
    as at most 7 tokens)."""
    if array.dtype == object:
        return np.array([x.encode() if isinstance(x, str) else x for x in array], dtype=bytes)
    return array


def _converter(saved_model_dir, signature, mode, calibration):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = True  # tensorflow-text's tokenizers; anything else is refused after conversion
    converter.target_spec._experimental_custom_op_registerers = list(
        tflite_registrar.SELECT_TFTEXT_OPS
    )  # calibration runs them
    if mode != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in ("int8", "16x8"):  # by name: the interpreter's input order is not the signature's
        count = len(next(iter(calibration.values())))
        converter.representative_dataset = lambda: (
            {n: a[i : i + 1] for n, a in calibration.items()} for i in range(count)
        )
    if mode == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter._experimental_calibrate_only = True  # quantized by `quantize_int8`
    if mode == "16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
    return converter


@contextlib.contextmanager
def _conversion(mode):
    try:
        yield
    except Exception as error:  # the converter raises ConverterError and plain Exceptions
        reason = " ".join(str(error).split())[:300]
        raise Refused(f"TFLite {mode} conversion failed: {reason}", filename(mode), {"quantize": mode}) from error


def convert(saved_model_dir: str, signature: str, mode: str, calibration: dict | None = None) -> bytes:
    """TFLite flatbuffer bytes of one SavedModel signature in `mode` (for int8: calibrated, not yet
    quantized); `calibration` maps input names to arrays of training examples."""
    with _conversion(mode):
        with native_output.quiet():
            return _converter(saved_model_dir, signature, mode, calibration).convert()


def quantize_int8(calibrated: bytes, float_ops: Sequence[str] = ()) -> bytes:
    """The int8 flatbuffer of a calibrated one, keeping the op types `float_ops` in float32 (the
    MLIR quantizer's denylist, as tf.lite.experimental.QuantizationDebugger applies it)."""
    with _conversion("int8"):
        with native_output.quiet():
            return lite_convert.mlir_quantize(calibrated, denylisted_ops=list(float_ops))


@contextlib.contextmanager
def builtins_and_text_ops_only(mode, signature, alternatives=()):
    """Turns the interpreter's error for an op that it cannot resolve (when a node is prepared, which
    for ops inside a loop is when it first runs) into an error naming the op, and any other failure
    to run (say, a division by a tensor quantized to zero) into a refusal."""
    try:
        yield
    except RuntimeError as error:
        missing = re.search(r"unresolved custom op: ([\w>]+)", str(error))
        if not missing:
            reason = " ".join(str(error).split())[:300]
            raise Refused(
                f"TFLite {mode} refused: the interpreter failed: {reason}", filename(mode), {"quantize": mode}
            ) from error
        instead = " or ".join(f"--signature {name}" for name in alternatives) or "another --signature"
        raise GardenError(
            f"TFLite {mode} refused: signature '{signature}' needs TensorFlow op {missing.group(1)}, which is neither "
            "a TFLite builtin nor a tensorflow-text custom op, so it would need Flex (Select TF ops), which no "
            f"interpreter here can verify; no TFLite model was written (export {instead}, or serve this one as a "
            "SavedModel)"
        ) from error


def write_file(target, content):
    """Writes `content` to `target` in one rename, so no reader sees half a model; returns `target`."""
    with open(target + ".tmp", "wb") as f:
        f.write(content)
    os.replace(target + ".tmp", target)
    return target


def tflite_runner(content=None, path=None, signature="serving_default"):
    """fn(**named arrays) -> outputs of one signature of a TFLite model."""
    runner = interpreter(content, path).get_signature_runner(signature)
    return lambda **arrays: runner(**{n: np.ascontiguousarray(a) for n, a in arrays.items()})


def export_mode(reference: ExportReference, export_dir: str, workdir: str, mode: str) -> dict:
    """Writes `export_dir/model_<mode>.tflite`, converted from the export's SavedModel, if it passes
    the reference's parity and quality bounds; returns the manifest."""
    reference.check_mode(mode)
    name, signature = filename(mode), reference.signature_to_convert()
    calibration = None
    if mode in ("int8", "16x8"):
        calibration = {n: _calibration_array(a) for n, a in reference.calibration(signature).items()}
    content = convert(reference.saved_model_to_convert(workdir, signature), signature, mode, calibration)
    attempts = ((), FLOAT_OPS) if mode == "int8" else (None,)  # int8: all ops, then sensitive ones in float32
    signatures = getattr(reference, "signatures", {})  # a tensor input serves where raw strings cannot
    others = [name for name, served in signatures.items() if name != signature and served.features is None]
    for float_ops in attempts:
        candidate = content if float_ops is None else quantize_int8(content, float_ops)
        found = {
            "quantize": mode,
            "size_bytes": len(candidate),
            "threads": THREADS,
            "custom_ops": custom_ops(candidate),
        }
        if float_ops is not None:
            found["float_ops"] = list(float_ops)
        if found["custom_ops"]:
            found["op_registerers"] = REGISTRAR
        try:
            with builtins_and_text_ops_only(mode, signature, others):
                runner = lambda name, model=candidate: tflite_runner(model, signature=name)  # noqa: E731
                measured = reference.judge(f"TFLite {mode}", runner, signature)
            break
        except Refused as refused:
            refused.measured.update(found)
            if float_ops == attempts[-1]:
                raise
    target = write_file(os.path.join(export_dir, name), candidate)
    return reference.record(export_dir, name, target, {**measured, **found})


@EXPORTERS.register("tflite")
def tflite_jobs(reference: ExportReference, export_dir: str, workdir: str) -> list[Job]:
    return [
        (filename(mode), functools.partial(export_mode, reference, export_dir, workdir, mode))
        for mode in reference.options.quantize
    ]
