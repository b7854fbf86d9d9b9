"""Checks an artifact against the Keras model before it is kept."""

import numpy as np

from garden.errors import GardenError

PARITY_EXAMPLES = 256


def max_abs_error(expected, actual):
    return float(np.max(np.abs(np.asarray(expected, np.float64) - np.asarray(actual, np.float64))))


def accuracy(labels, class_ids):
    return float(np.mean(np.asarray(class_ids).reshape(-1) == labels))


def check(kind, error, bound, accuracy_drop=None, max_accuracy_drop=None):
    """Raises a GardenError saying by how much `kind` missed its bound; nothing has been written."""
    if error > bound:
        raise GardenError(
            f"{kind} refused: max |difference| from the Keras model is {error:.3g}, over the bound {bound:.3g} "
            f"by {error - bound:.3g}; nothing was written (raise --max-error to accept it)"
        )
    if max_accuracy_drop is not None and accuracy_drop > max_accuracy_drop:
        raise GardenError(
            f"{kind} refused: accuracy drops {accuracy_drop:.2f} points from the Keras model, over the "
            f"allowed {max_accuracy_drop:.2f}; nothing was written (raise --max-accuracy-drop to accept it)"
        )
