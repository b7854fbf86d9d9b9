"""Decoder language models export their generation loop and decode step, which the `decoder`
reference (garden/export/decoder.py) writes and judges."""

from garden.export.serving.base import Serving
from garden.registry import SERVINGS


@SERVINGS.register("causal_lm")
class CausalLMServing(Serving):
    export_kind = "decoder"
