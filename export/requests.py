"""The checks every served request passes, whichever API brought it (REST's JSON, gRPC's TensorProtos):
arrays that fit the signature, a bounded number of instances, values in the trained range, generations
within the server's beams, new tokens and memory; and the one line a model's error is answered with."""

import dataclasses
import re
import threading

import numpy as np
import tensorflow as tf

# A beam search's peak memory holds about 4-5 copies of its key/value cache and logits (measured on
# the tiny test decoder, float32: 5,000-100,000 beams of 1 prompt, 10-50 new tokens, 3.6-4.6x).
COPIES = 5


@dataclasses.dataclass
class Limits:
    """What one request may hold, how long a batch waits and what the generations running at once may
    hold (`garden serve`'s --max-* and --batch-* flags)."""

    max_request_bytes: int = 10 * 2**20
    max_instances: int = 1024
    max_batch_size: int = 64
    batch_timeout_ms: float = 5.0
    max_beams: int = 16
    max_new_tokens: int = 1024
    max_generation_bytes: int = 2**30


@dataclasses.dataclass(frozen=True)
class Generation:
    """A language model's call: `rows` prompts of up to `prompt` tokens, each searching `beams` beams
    for up to `new` tokens, through a key/value cache of `position_bytes` per position and beam that
    gives `vocabulary` logits per step."""

    rows: int
    beams: int
    prompt: int
    new: int
    position_bytes: int
    vocabulary: int

    @property
    def bytes(self) -> int:
        """Its peak memory, estimated: COPIES x (rows x beams x (prompt + new) x position_bytes of cache +
        rows x beams x vocabulary float32 logits)."""
        per_beam = (self.prompt + self.new) * self.position_bytes + 4 * self.vocabulary
        return COPIES * self.rows * self.beams * per_beam

    def joined(self, other: "Generation") -> "Generation":
        """The call batching both: rows add up, and every row is padded to the longest prompt, the
        widest search and the most new tokens."""
        return dataclasses.replace(
            self,
            rows=self.rows + other.rows,
            beams=max(self.beams, other.beams),
            prompt=max(self.prompt, other.prompt),
            new=max(self.new, other.new),
        )


class RequestError(ValueError):
    """A request that does not fit the model: REST answers 400, gRPC INVALID_ARGUMENT."""


class NotFound(LookupError):
    """No such model or version: REST answers 404, gRPC NOT_FOUND."""


class Busy(Exception):
    """A generation that fits the server, but not beside those running: REST answers 429, gRPC
    RESOURCE_EXHAUSTED (as TF Serving answers when its batching queue is full); the client retries."""


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


class GenerationBudget:
    """The memory that the generations running at once may hold (--max-generation-bytes): each takes
    its estimate (Generation.bytes) before it runs and gives it back when done."""

    def __init__(self, limit: int):
        self.limit, self.used, self.lock = limit, 0, threading.Lock()

    def take(self, size: int) -> bool:
        """Takes `size` bytes if they are free."""
        with self.lock:
            if self.used + size > self.limit:
                return False
            self.used += size
            return True

    def give(self, size: int) -> None:
        with self.lock:
            self.used -= size

    def reserve(self, generation: Generation) -> int:
        """Takes `generation`'s bytes (returned, to give back when it is done); RequestError when it can
        never fit, Busy when it does not fit beside the generations running."""
        size = generation.bytes
        if size > self.limit:
            raise RequestError(
                f"this generation needs about {_mib(size)} (rows x beams x (prompt + new tokens) of key/value "
                f"cache), over this server's --max-generation-bytes {self.limit}; ask for fewer rows, beams or "
                "new tokens (or raise --max-generation-bytes)"
            )
        if not self.take(size):
            raise Busy(
                f"server busy: the generations running hold {_mib(self.used)} of --max-generation-bytes "
                f"{self.limit} and this one needs {_mib(size)}; retry"
            )
        return size


def check_generation(beams: int, new_tokens: int, limits: Limits) -> None:
    """Refuses a generation of more beams or new tokens than `limits` allow."""
    if beams > limits.max_beams:
        raise RequestError(
            f"beams {beams} is over this server's --max-beams {limits.max_beams}; ask for fewer (or raise --max-beams)"
        )
    if new_tokens > limits.max_new_tokens:
        raise RequestError(
            f"max_new_tokens {new_tokens} is over this server's --max-new-tokens {limits.max_new_tokens}; ask for "
            "fewer (or raise --max-new-tokens)"
        )


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
    preamble, stack, function and node locations ([[{{node ...}}]], {{function_node ...}}) and the wrapper
    of a failed assertion (assertion failed: [...])."""
    lines = [line.strip() for line in str(getattr(error, "message", None) or error).splitlines() if line.strip()]
    located = next((i for i, line in enumerate(lines) if "[[" in line), None)
    if located is not None:  # TensorFlow's message is the line at the node location, or the one before it
        said = lines[located].split("[[")[0].strip() or (lines[located - 1] if located else "")
    else:
        said = lines[0] if lines else ""
    said = re.sub(r"\{\{function_node [^}]*\}\}|\[Op:[^\]]*\]", "", said).strip()
    said = re.sub(r"^assertion failed: \[(.*)\]$", r"\1", said)
    return " ".join((said or type(error).__name__).split())[:300]
