"""Serving companions: for each task type, what its exports serve and how they are judged
(garden.export.serving.base). Importing this package registers them in `SERVINGS`."""

from garden.export.serving import (  # noqa: F401  (registers)
    causal_lm,
    image_classification,
    masked_lm,
    multiple_choice,
    span_qa,
    text_classification,
    text_embedding,
    text_regression,
    token_tagging,
)
from garden.export.serving.base import Serving, serving_for  # noqa: F401
