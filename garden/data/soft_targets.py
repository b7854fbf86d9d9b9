"""A teacher's logits for the examples of one data config: written by `garden distill logits`,
attached to those same examples for the `distillation` loss. The file carries a fingerprint of the
examples (features, labels, order) and the label names, so logits never meet other examples. It may
also carry a transfer set (`--augment`): more examples, stored whole, that the student trains on
after the originals, with their logits after the originals' logits."""

import hashlib
import os

import numpy as np

from garden.data.examples import Examples
from garden.errors import GardenError

FEATURE = "teacher_logits"
TRANSFER = "transfer_"


def fingerprint(examples):
    """sha256 of the examples' features, labels and order."""
    digest = hashlib.sha256()
    for name in sorted(examples.features):
        values = np.asarray(examples.features[name])
        digest.update(name.encode())
        digest.update("\x00".join(map(str, values.tolist())).encode() if values.dtype == object else values.tobytes())
    digest.update(np.asarray(examples.labels).tobytes())
    return digest.hexdigest()


def save(path, logits, examples, transfer=None):
    """Writes `logits` [examples (+ transfer examples), classes] of `examples` and of the optional
    `transfer` examples (whose features and labels are stored too) to `path` (.npz) in one rename."""
    count = len(examples) + (len(transfer) if transfer else 0)
    if len(logits) != count:
        raise GardenError(f"{len(logits)} teacher logits for {count} examples")
    extra = {}
    if transfer:
        for name, values in transfer.features.items():
            encoded = [str(value).encode() for value in values]
            extra[f"{TRANSFER}{name}"] = np.frombuffer(b"".join(encoded), np.uint8)
            extra[f"{TRANSFER}{name}_ends"] = np.cumsum([len(value) for value in encoded])
        extra[f"{TRANSFER}labels"] = np.asarray(transfer.labels)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    staging = path + ".tmp"
    with open(staging, "wb") as f:
        np.savez(
            f,
            logits=logits.astype(np.float32),
            fingerprint=fingerprint(examples),
            label_names=np.array(examples.label_names),
            **extra,
        )
    os.replace(staging, path)


def attach(examples, path):
    """`examples`, then the file's transfer examples if any, with the teacher's logits from `path`
    as the feature `teacher_logits`."""
    if not os.path.isfile(path):
        raise GardenError(
            f"no teacher logits at {path}; write them with 'garden distill logits TEACHER_RUN --out {path}'"
        )
    with np.load(path) as data:
        logits, stored, label_names = data["logits"], str(data["fingerprint"]), data["label_names"].tolist()
        transfer = {name[len(TRANSFER) :]: data[name] for name in data.files if name.startswith(TRANSFER)}
    labels = transfer.pop("labels", None)
    transfer = {
        name: _decoded(transfer[name], transfer[f"{name}_ends"]) for name in transfer if not name.endswith("_ends")
    }
    if label_names != list(examples.label_names):
        raise GardenError(
            f"{path}: the teacher's labels {label_names} differ from the training data's {list(examples.label_names)}"
        )
    if stored != fingerprint(examples):
        raise GardenError(
            f"{path} holds logits of other examples ({len(logits)} teacher rows, {len(examples)} training examples, "
            "or another order or text); write them with 'garden distill logits' for the same task.train_data"
        )
    if transfer:
        examples = examples.concatenate(Examples(transfer, labels, examples.label_names))
    return Examples({**examples.features, FEATURE: logits}, examples.labels, examples.label_names)


def _decoded(data, ends):
    """The strings stored as UTF-8 bytes `data` cut at `ends`."""
    data = data.tobytes()
    return np.array([data[start:end].decode() for start, end in zip([0, *ends[:-1]], ends)], object)


def with_teacher(prepare):
    """A task's `prepare(features, labels)` for examples that carry teacher logits: the logits
    leave the features and join the labels as {"labels", "teacher_logits"} (the distillation loss's targets)."""

    def prepare_with_teacher(features, labels):
        features = dict(features)
        teacher = features.pop(FEATURE)
        inputs, labels = prepare(features, labels)
        return inputs, {"labels": labels, FEATURE: teacher}

    return prepare_with_teacher
