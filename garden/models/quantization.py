"""Weight-only quantization of a backbone with Keras's own `quantize`: int8 (one scale per output
channel) or int4 (one scale per block of 128 inputs, two weights a byte). Activations stay float, so
a quantized model computes what its dequantized weights compute; embeddings (tied output
projections included), dense and einsum layers are quantized, norms and biases are not.

A quantized run loads its float checkpoint nowhere: `garden quantize` writes the quantized weights
as a run folder of their own, and a LoRA run on a quantized base (QLoRA) trains adapters, kept
apart from the int8 or int4 kernels they sit on."""

import contextlib
import gc
import warnings

import keras
from keras.quantizers import Int4QuantizationConfig, Int8QuantizationConfig


def quantize_backbones(models: dict, mode: str) -> None:
    """Quantizes the weights of the `models`' backbones (each once) in place; '' leaves them float."""
    backbones = {id(b): b for b in (model.get_layer("backbone") for model in models.values())}
    for backbone in backbones.values():
        quantize(backbone, mode)


def quantize(backbone: keras.Model, mode: str) -> None:
    """Quantizes `backbone`'s weights in place, weight-only; '' leaves them float."""
    if not mode:
        return
    config = Int8QuantizationConfig(activation_quantizer=None) if mode == "int8" else Int4QuantizationConfig()
    with warnings.catch_warnings(), _one_collection():
        warnings.filterwarnings("ignore", message=".*does not have a `quantize` method")  # norms, inputs
        backbone.quantize(config=config, type_check=False)  # LoRA makes subclasses of Dense and EinsumDense


@contextlib.contextmanager
def _one_collection():
    """Keras collects garbage after each float kernel that quantizing deletes, 0.4 s apiece in a large
    process (8 of the 11 s of loading a 4-layer quantized run in the test suite): collect once instead."""
    collect = gc.collect
    gc.collect = lambda generation=2: 0
    try:
        yield
    finally:
        gc.collect = collect
        collect()


def weight_bytes(model: keras.Model) -> int:
    """The bytes that `model`'s weights take (int4 kernels pack two to a byte)."""
    return sum(int(v.numpy().nbytes) for v in model.weights)
