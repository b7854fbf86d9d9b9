"""In-memory labeled examples: what a catalog dataset returns for one split."""

import dataclasses
import re

import numpy as np

from garden.errors import GardenError


@dataclasses.dataclass
class Examples:
    """Features (name -> array, first axis is the example), integer labels and label names."""

    features: dict
    labels: np.ndarray
    label_names: list

    def __len__(self):
        return len(self.labels)

    def take(self, count):
        """`count` evenly spaced examples, in order (all of them when count < 0), so a slice of a
        file sorted by class still holds every class."""
        if count < 0 or count >= len(self):
            return self
        return self._select(np.arange(count) * len(self) // count)

    def of_classes(self, classes, per_class=-1):
        """The examples of the named `classes` (all when empty), at most `per_class` of each (evenly
        spaced through the class, in order; all when negative)."""
        index = np.arange(len(self))
        if np.ndim(self.labels) != 1 and (classes or per_class >= 0):
            raise GardenError("classes and examples_per_class select single-label data; this data is multi-label")
        if classes:
            names = [str(c) for c in classes]
            unknown = [n for n in names if n not in self.label_names]
            if unknown:
                raise GardenError(
                    f"classes {', '.join(unknown)} are not in this data; it has {', '.join(self.label_names)}"
                )
            wanted = [self.label_names.index(n) for n in names]
            index = np.flatnonzero(np.isin(self.labels, wanted))
        if per_class >= 0:
            kept = []
            for label in np.unique(self.labels[index]):
                members = index[self.labels[index] == label]
                kept.extend(members[np.arange(min(per_class, len(members))) * len(members) // max(per_class, 1)])
            index = np.sort(np.asarray(kept, np.int64))
        return self if len(index) == len(self) else self._select(index)

    def fold(self, spec):
        """The examples of fold `spec`: "K/N" keeps positions K, K+N, K+2N, ...; "~K/N" keeps the
        others; "" keeps all."""
        match = re.fullmatch(r"(~?)(\d+)/(\d+)", spec)
        if spec and not (match and int(match[2]) < int(match[3])):
            raise GardenError(
                f"fold '{spec}' is not K/N or ~K/N with 0 <= K < N (for example 0/5, or ~0/5 for the rest)"
            )
        if not spec:
            return self
        held = np.arange(len(self)) % int(match[3]) == int(match[2])
        return self._select(np.flatnonzero(~held if match[1] else held))

    def concatenate(self, other):
        """These examples, then `other`'s (the same features and label names)."""
        features = {
            name: np.concatenate([values, np.asarray(other.features[name], values.dtype)])
            for name, values in self.features.items()
        }
        return Examples(features, np.concatenate([self.labels, other.labels]), self.label_names)

    def _select(self, index):
        return Examples({k: v[index] for k, v in self.features.items()}, self.labels[index], self.label_names)


def check_split(dataset, split, splits):
    if split not in splits:
        raise GardenError(f"dataset '{dataset}' has no split '{split}'; choose from: {', '.join(splits)}")
    return splits[split] if isinstance(splits, dict) else split


def as_int_labels(labels):
    return np.asarray(labels, dtype=np.int64)
