"""Base of the text tasks' companions: the lookup tables a raw-string signature keeps."""

from garden.data.tokenizers import TFLITE_TWINNED
from garden.export.serving.base import Serving


class TextServing(Serving):
    def serving_resources(self):
        """The training tokenizer where it serves itself (byte-level BPE), with its lookup tables."""
        tokenizer = self.task.tokenizer
        return [] if isinstance(tokenizer, TFLITE_TWINNED) else [tokenizer]
