"""Tasks: what a config's `task.type` builds (model, data, loss, metrics, serving outputs)."""

from garden.tasks import (  # noqa: F401  (registers)
    causal_lm,
    image_classification,
    masked_lm,
    multiple_choice,
    multitask,
    span_qa,
    text_classification,
    text_embedding,
    text_regression,
    token_tagging,
)
