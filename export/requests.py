"""The checks every served request passes, whichever API brought it (REST's JSON, gRPC's TensorProtos):
arrays that fit the signature, a bounded number of instances, values in the trained range; and the
one line a model's error is answered with."""

import dataclasses

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class Limits:
    """What one request may hold and how long a batch waits (`garden serve`'s --max-* and --batch-* flags)."""

    max_request_bytes: int = 10 * 2**20
    max_instances: int = 1024
    max_batch_size: int = 64
    batch_timeout_ms: float = 5.0


class RequestError(ValueError):
    """A request that does not fit the model: REST answers 400, gRPC INVALID_ARGUMENT."""


class NotFound(LookupError):
    """No such model or version: REST answers 404, gRPC NOT_FOUND."""


def check_array(name: str, array: np.ndarray, spec: tf.TensorSpec) -> np.ndarray:
    """`array` for input `name` after refusing non-finite floats, a shape the spec does not take and
    an empty batch."""
    if spec.dtype.is_floating and not np.all(np.isfinite(array)):
        raise RequestError(f"input '{name}' holds NaN or infinite values (as {spec.dtype.name}); send finite numbers")
    expected = spec.shape
    if array.ndim != expected.rank or not expected.is_compatible_with(array.shape):
        want = (
            "[" + ", ".join("N" if i == 0 else str(d if d is not None else "?") for i, d in enumerate(expected)) + "]"
        )
        raise RequestError(f"input '{name}' has shape {list(array.shape)} but the signature takes {want}")
    if array.shape[0] == 0:
        raise RequestError("the request holds no instances; send at least one")
    return array


def check_instances(arrays: dict[str, np.ndarray], max_instances: int) -> None:
    """Refuses inputs with different numbers of instances, or more than `max_instances`."""
    counts = {len(a) for a in arrays.values()}
    if len(counts) != 1:
        raise RequestError(f"inputs have different numbers of instances: {sorted(counts)}")
    if counts.pop() > max_instances:
        raise RequestError(
            f"the request holds more than {max_instances} instances; split it (or raise --max-instances)"
        )


def check_range(name: str, array: np.ndarray, bounds: tuple[float, float]) -> None:
    """Refuses `array` when it leaves the (low, high) range input `name` was trained on."""
    low, high = bounds
    if array.size and (array.min() < low or array.max() > high):
        hint = " (divide 0-255 pixels by 255)" if high <= 1 < array.max() <= 255 else ""
        raise RequestError(
            f"input '{name}' takes values in [{low:g}, {high:g}]; got values from {array.min():g} to {array.max():g}"
            f"{hint}"
        )


def model_error(error: BaseException) -> str:
    """The line of a model's error that says what went wrong, without TensorFlow's graph execution
    preamble, stack and node locations ([[{{node ...}}]])."""
    lines = [line.strip() for line in str(getattr(error, "message", None) or error).splitlines() if line.strip()]
    located = next((i for i, line in enumerate(lines) if "[[" in line), None)
    if located is not None:  # TensorFlow's message is the line at the node location, or the one before it
        said = lines[located].split("[[")[0].strip() or (lines[located - 1] if located else "")
    else:
        said = lines[0] if lines else ""
    return " ".join((said or type(error).__name__).split())[:300]
