"""LoRA: low-rank adapters on a frozen backbone's dense projections (Hu et al., 2021), as PEFT makes them.

An adapted `Dense` or `EinsumDense` keeps its own weights frozen and adds `alpha / rank · dropout(x) A B`
to its output before the activation: A is [d_in, rank] (He-uniform), B is [rank, d_out] (zeros, so
training starts from the base model), d_in the product of the kernel axes the input holds and d_out
of the others. A layer is adapted when a `targets` pattern matches its name or its path in the
backbone (`transformer_layer_0/self_attention/query`) in full.

Written here, not with Keras's `enable_lora`, because Keras factors an EinsumDense kernel per head
(A [hidden, heads, rank], B [rank, head_dim]), has no dropout and leaves biases trainable. The
adapter is a class mixed into the layer's own (so KerasHub's layers keep their place, names and
checkpoint paths), and it runs on an int8 or int4 base as on a float one (QLoRA)."""

import os
import re

import keras
import numpy as np
from keras import ops
from safetensors.numpy import save_file

from garden.errors import GardenError


class _Adapted:
    """Mixed into the class of an adapted layer by `add_adapters`."""

    def call(self, inputs, training=None):
        return self._adapt(super().call(inputs), inputs, training)

    def quantized_call(self, inputs, training=None):
        return self._adapt(super().quantized_call(inputs), inputs, training)

    def _adapt(self, outputs, inputs, training):
        if training and self.lora_dropout:
            inputs = keras.random.dropout(inputs, self.lora_dropout, seed=self.lora_seed)
        outputs = ops.add(outputs, ops.multiply(self.lora_scale, self._project(inputs, self.lora_delta())))
        return self.lora_activation(outputs)

    def _project(self, inputs, kernel):
        return ops.einsum(self.equation, inputs, kernel) if hasattr(self, "equation") else ops.matmul(inputs, kernel)

    def lora_delta(self):
        """A·B laid out as the kernel is."""
        delta = ops.reshape(ops.matmul(self.lora_a, self.lora_b), self._lora_shape)
        return ops.transpose(delta, self._lora_order)


_CLASSES: dict[type, type] = {}


def _adapted_class(cls):
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"LoRA{cls.__name__}", (_Adapted, cls), {})
    return _CLASSES[cls]


def dense_layers(model: keras.Layer) -> list:
    """(path, layer) of every Dense and EinsumDense inside `model`, each once, in order."""
    found = {}

    def walk(layer, prefix):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            path = f"{prefix}{child.name}"
            if isinstance(child, (keras.layers.Dense, keras.layers.EinsumDense)):
                found.setdefault(id(child), (path, child))
            else:
                walk(child, path + "/")

    walk(model, "")
    return list(found.values())


def _axes(layer):
    """(the kernel's input axes, its output axes)."""
    rank = len(layer._kernel.shape)
    if not hasattr(layer, "equation"):
        return list(range(rank - 1)), [rank - 1]
    inputs, kernel = layer.equation.split("->")[0].split(",")
    held = [i for i, letter in enumerate(kernel) if letter in inputs]
    return held, [i for i in range(rank) if i not in held]


def _adapt_layer(layer, rank: int, alpha: float, dropout: float):
    shape = [int(n) for n in layer._kernel.shape]
    held, produced = _axes(layer)
    d_in, d_out = int(np.prod([shape[i] for i in held])), int(np.prod([shape[i] for i in produced]))
    for variable in layer.weights:
        variable.trainable = False
    layer.__class__ = _adapted_class(type(layer))
    layer._tracker.unlock()
    layer.lora_a = layer.add_weight(name="lora_a", shape=(d_in, rank), initializer="he_uniform")
    layer.lora_b = layer.add_weight(name="lora_b", shape=(rank, d_out), initializer="zeros")
    layer.lora_seed = keras.random.SeedGenerator(name="lora_seed")
    layer._tracker.lock()
    layer.lora_scale, layer.lora_dropout = alpha / rank, dropout
    layer.lora_activation, layer.activation = layer.activation or keras.activations.linear, keras.activations.linear
    layer._lora_shape = [shape[i] for i in held + produced]
    layer._lora_order = list(np.argsort(held + produced))


def add_adapters(backbone: keras.Model, lora) -> None:
    """Freezes `backbone` and adapts its layers that `lora.targets` match (the `task.model.lora` config)."""
    if lora.rank <= 0:
        return
    layers = dense_layers(backbone)
    try:
        targets = [re.compile(pattern) for pattern in lora.targets]
    except re.error as error:
        raise GardenError(
            f"task.model.lora.targets holds a pattern that is not a regular expression ({error})"
        ) from None
    chosen = [layer for path, layer in layers if any(t.fullmatch(layer.name) or t.fullmatch(path) for t in targets)]
    if not chosen:
        names = sorted({layer.name for _, layer in layers})
        raise GardenError(
            f"task.model.lora.targets {list(lora.targets)} match no dense layer of backbone {backbone.name}; "
            f"its dense layers are named {', '.join(names)}"
        )
    for layer in backbone._flatten_layers(include_self=False):
        layer.trainable = False
    for layer in chosen:
        layer.trainable = True
        _adapt_layer(layer, lora.rank, lora.alpha or lora.rank, lora.dropout)


def adapted(model: keras.Layer) -> list:
    """The adapted layers inside `model`."""
    return [layer for _, layer in dense_layers(model) if isinstance(layer, _Adapted)]


def adapter_variables(model: keras.Layer) -> list:
    return [v for layer in adapted(model) for v in (layer.lora_a, layer.lora_b)]


def base_weights(model: keras.Layer) -> list:
    """`model.weights` without the adapters: in the order of the same model built without them."""
    adapters = {id(v) for v in adapter_variables(model)}
    return [v for v in model.weights if id(v) not in adapters]


def set_base_weights(model: keras.Layer, values: list) -> None:
    """`model.set_weights(values)` for values of the model without adapters."""
    weights = base_weights(model)
    if len(weights) != len(values):
        raise GardenError(f"{model.name} holds {len(weights)} weights besides its adapters; {len(values)} were given")
    for variable, value in zip(weights, values):
        variable.assign(value)


def merged_values(model: keras.Layer) -> list[np.ndarray]:
    """The values of `base_weights(model)` with each adapter added into its kernel."""
    merged = {
        id(layer._kernel): ops.convert_to_numpy(layer._kernel + layer.lora_scale * layer.lora_delta())
        for layer in adapted(model)
    }
    return [merged[id(v)] if id(v) in merged else ops.convert_to_numpy(v) for v in base_weights(model)]


def write_adapters(path: str, variables: list, step: int) -> None:
    """Writes what a LoRA run trains, its trainable `variables` (the adapters, and the heads), to the
    safetensors file `path`, by variable path, atomically."""
    tensors = {v.path: ops.convert_to_numpy(v) for v in variables}
    staging = path + ".partial"
    save_file(tensors, staging, metadata={"step": str(step)})
    os.replace(staging, path)
