"""Checks an artifact against the Keras model before it is kept."""

import time

import numpy as np

from garden.errors import GardenError

BATCH = 500
LATENCY_RUNS = 50
WARMUP_RUNS = 3


def max_abs_error(expected, actual):
    return float(np.max(np.abs(np.asarray(expected, np.float64) - np.asarray(actual, np.float64))))


class Refused(GardenError):
    """An artifact that missed a bound; `measured` holds what was measured, for the report."""

    def __init__(self, message, name, measured):
        super().__init__(message)
        self.name = name
        self.measured = measured


def refusal(kind, error, bound, drop=None, max_drop=None, quality="accuracy"):
    """Why `kind` missed its parity bound (None: none) or its bound on the drop of `quality` (in
    points), or None; nothing has been written."""
    if bound is not None and error > bound:
        return (
            f"{kind} refused: max |difference| from the Keras model is {error:.3g}, over the bound {bound:.3g} "
            f"by {error - bound:.3g}; nothing was written (raise --max-error to accept it)"
        )
    if max_drop is not None and drop > max_drop:
        return (
            f"{kind} refused: {quality} drops {drop:.2f} points from the Keras model, over the "
            f"allowed {max_drop:.2f}; nothing was written (raise --max-quality-drop to accept it)"
        )
    return None


def batched(fn, inputs, batch_size=BATCH):
    """Runs fn(*arrays) -> dict over `inputs` (a list of arrays) in batches; concatenates the outputs."""
    count = len(inputs[0])
    parts = [fn(*[a[i : i + batch_size] for a in inputs]) for i in range(0, count, batch_size)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def numpy_outputs(function):
    return lambda *arrays: {k: v.numpy() for k, v in function(*arrays).items()}


def table_cells(entry):
    """(size, latency, parity) cells of an export table row: blank where not measured."""
    size = f"{entry['size_bytes'] / 1e6:.2f} MB" if "size_bytes" in entry else ""
    latency = f"{entry['latency_ms']:.2f} ms" if "latency_ms" in entry else ""
    parity = f"{entry['max_abs_error']:.2g}" if "max_abs_error" in entry else ""
    if entry.get("error_bound") is not None:
        parity += f" (≤ {entry['error_bound']:.2g})"
    return size, latency, parity


def median_latency_ms(run, inputs, runs=LATENCY_RUNS):
    """Median wall time in milliseconds of `run(*arrays)` on one example at a time, cycling through
    `inputs` (a list of arrays), after a few warm-up calls."""
    count = len(inputs[0])
    times = []
    for i in range(runs + WARMUP_RUNS):
        one = [a[i % count : i % count + 1] for a in inputs]
        start = time.perf_counter()
        run(*one)
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times[WARMUP_RUNS:]))
