"""Task heads: one file each, registered in `garden.registry.HEADS`."""

from garden.models.heads import (  # noqa: F401  (registers)
    causal_lm,
    classification,
    embedding,
    masked_lm,
    multi_label,
    multiple_choice,
    pair_classification,
    regression,
    span_qa,
    token_tagging,
)
