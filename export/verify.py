"""Checks an artifact against the Keras model before it is kept."""

import time

import numpy as np

from garden.errors import GardenError

PARITY_EXAMPLES = 256
LATENCY_RUNS = 50
WARMUP_RUNS = 3


def max_abs_error(expected, actual):
    return float(np.max(np.abs(np.asarray(expected, np.float64) - np.asarray(actual, np.float64))))


def accuracy(labels, class_ids):
    return float(np.mean(np.asarray(class_ids).reshape(-1) == labels))


class Refused(GardenError):
    """An artifact that missed a bound; `measured` holds what was measured, for the report."""

    def __init__(self, message, name, measured):
        super().__init__(message)
        self.name = name
        self.measured = measured


def refusal(kind, error, bound, accuracy_drop=None, max_accuracy_drop=None):
    """Why `kind` missed its parity bound (None: none) or accuracy bound (nothing has been written), or None."""
    if bound is not None and error > bound:
        return (
            f"{kind} refused: max |difference| from the Keras model is {error:.3g}, over the bound {bound:.3g} "
            f"by {error - bound:.3g}; nothing was written (raise --max-error to accept it)"
        )
    if max_accuracy_drop is not None and accuracy_drop > max_accuracy_drop:
        return (
            f"{kind} refused: accuracy drops {accuracy_drop:.2f} points from the Keras model, over the "
            f"allowed {max_accuracy_drop:.2f}; nothing was written (raise --max-accuracy-drop to accept it)"
        )
    return None


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
