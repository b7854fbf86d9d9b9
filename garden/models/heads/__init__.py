"""Task heads: one file each, registered in `garden.registry.HEADS`."""

from garden.models.heads import (  # noqa: F401  (registers)
    causal_lm,
    classification,
    masked_lm,
    multiple_choice,
    pair_classification,
    regression,
    span_qa,
    token_tagging,
)
