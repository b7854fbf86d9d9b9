"""A transfer set for logit distillation: perturbed copies of the training texts, for the teacher to
label (Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks").

Each copy deletes every word with probability `drop` (their masking, without a [MASK] token any
tokenizer would have to know) and, with probability `crop`, keeps only a random run of a quarter
to all of the remaining words (their n-gram sampling, sized for documents). A copy keeps its
source's label. The teacher's logits on the copies carry what the student cannot learn from the
labels alone: how the teacher's belief moves when evidence is removed.
"""

import numpy as np

from garden.data.examples import Examples
from garden.errors import GardenError


def perturb(text, rng, drop=0.1, crop=0.25):
    """`text` with words deleted and, sometimes, cropped to a random run of its words."""
    words = text.split()
    kept = [word for word in words if rng.random() >= drop] or words[:1]
    if len(kept) > 1 and rng.random() < crop:
        length = rng.integers(max(1, len(kept) // 4), len(kept) + 1)
        start = rng.integers(0, len(kept) - length + 1)
        kept = kept[start : start + length]
    return " ".join(kept)


def augmented_copies(examples, copies, seed=0):
    """`copies` perturbed copies of each text example (copy c of example i at c * len + i), with
    its label; every string feature (both segments of a pair) is perturbed."""
    strings = {name for name, values in examples.features.items() if np.asarray(values).dtype.kind in "OUS"}
    if not strings or len(strings) != len(examples.features):
        raise GardenError(
            f"--augment perturbs text, but the training features are {sorted(examples.features)} "
            "with non-string values; distill without --augment"
        )
    rng = np.random.default_rng(seed)
    features = {name: [] for name in strings}
    for _ in range(copies):
        for index in range(len(examples)):
            for name in strings:
                features[name].append(perturb(str(examples.features[name][index]), rng))
    return Examples(
        {name: np.array(values, object) for name, values in features.items()},
        np.tile(examples.labels, copies),
        examples.label_names,
    )
