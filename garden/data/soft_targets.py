"""A teacher's logits for the examples of one data config: written by `garden distill logits`,
attached to those same examples for the `distillation` loss. The file carries a fingerprint of the
examples (features, labels, order) and the label names, so logits never meet other examples."""

import hashlib
import os

import numpy as np

from garden.data.examples import Examples
from garden.errors import GardenError

FEATURE = "teacher_logits"


def fingerprint(examples):
    """sha256 of the examples' features, labels and order."""
    digest = hashlib.sha256()
    for name in sorted(examples.features):
        values = np.asarray(examples.features[name])
        digest.update(name.encode())
        digest.update("\x00".join(map(str, values.tolist())).encode() if values.dtype == object else values.tobytes())
    digest.update(np.asarray(examples.labels).tobytes())
    return digest.hexdigest()


def save(path, logits, examples):
    """Writes `logits` [examples, classes] of `examples` to `path` (.npz) in one rename."""
    if len(logits) != len(examples):
        raise GardenError(f"{len(logits)} teacher logits for {len(examples)} examples")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    staging = path + ".tmp"
    with open(staging, "wb") as f:
        np.savez(f, logits=logits.astype(np.float32), fingerprint=fingerprint(examples), label_names=np.array(examples.label_names))
    os.replace(staging, path)


def attach(examples, path):
    """`examples` with the teacher's logits from `path` as the feature `teacher_logits`."""
    if not os.path.isfile(path):
        raise GardenError(f"no teacher logits at {path}; write them with 'garden distill logits TEACHER_RUN --out {path}'")
    with np.load(path) as data:
        logits, stored, label_names = data["logits"], str(data["fingerprint"]), data["label_names"].tolist()
    if label_names != list(examples.label_names):
        raise GardenError(f"{path}: the teacher's labels {label_names} differ from the training data's {list(examples.label_names)}")
    if stored != fingerprint(examples):
        raise GardenError(
            f"{path} holds logits of other examples ({len(logits)} teacher rows, {len(examples)} training examples, or another "
            "order or text); write them with 'garden distill logits' for the same task.train_data"
        )
    return Examples({**examples.features, FEATURE: logits}, examples.labels, examples.label_names)


def with_teacher(prepare):
    """A task's `prepare(features, labels)` for examples that carry teacher logits: the logits
    leave the features and join the labels as {"labels", "teacher_logits"} (the distillation loss's targets)."""

    def prepare_with_teacher(features, labels):
        features = dict(features)
        teacher = features.pop(FEATURE)
        inputs, labels = prepare(features, labels)
        return inputs, {"labels": labels, FEATURE: teacher}

    return prepare_with_teacher
