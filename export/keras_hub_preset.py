"""`--format keras_hub`: the run's backbone as a KerasHub preset folder (`keras_hub/`), which
`keras_hub.models.Backbone.from_preset` loads: the KerasHub model inside Garden's backbone with LoRA
adapters merged into its kernels, written by KerasHub's own `save_to_preset`, and a text model's
tokenizer beside it. The heads are Garden's and stay out (a task preset would need KerasHub's heads).

Judged before it is moved into place: the folder reloaded through `from_preset` gives the run's
backbone outputs (adapters applied, not merged) within 1e-4 on inputs drawn for each of its inputs.
"""

import inspect
import os

import keras
import numpy as np

from garden.errors import GardenError
from garden.export.exporting import Job, staged
from garden.export.reference import ExportReference
from garden.export.verify import Refused, refusal
from garden.models.lora import merged_values
from garden.registry import EXPORTERS

NAME = "keras_hub"
BOUND = 1e-4  # max |Δ| of the reloaded preset's outputs from the run's backbone (merging adds rounding)
ROWS, LENGTH = 2, 16  # the checked inputs: rows, and tokens of a text model's


def keras_hub_model(backbone: keras.Model) -> tuple[keras.Model, type]:
    """The KerasHub model inside a Garden backbone (a text encoder's `encoder`, a decoder's or image
    backbone's `hub`) and the KerasHub class it is (or extends: Garden's padding-free BERT); one line
    where the backbone is Garden's own."""
    for name in ("hub", "encoder"):
        model = getattr(backbone, name, None)
        hub = [c for c in type(model).__mro__ if c.__module__.startswith("keras_hub.") and c is not keras.Model]
        if isinstance(model, keras.Model) and hub:
            return model, hub[0]
    raise GardenError(
        f"backbone '{backbone.name}' ({type(backbone).__name__}) is Garden's own, not a KerasHub model; export it "
        "with --format saved_model or tflite"
    )


def merged_keras_hub_model(backbone: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(the KerasHub model inside `backbone`, a new model of its KerasHub class holding its weights
    with LoRA adapters merged: KerasHub's own layers, no adapters)."""
    trained, hub_class = keras_hub_model(backbone)
    arguments = inspect.signature(hub_class.__init__).parameters
    config = {k: v for k, v in trained.get_config().items() if k in arguments or k in ("name", "dtype", "trainable")}
    plain = hub_class.from_config(config)
    for weight, value in zip(plain.weights, merged_values(trained), strict=True):
        weight.assign(value)
    return trained, plain


def checked_inputs(model: keras.Model, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for each of `model`'s inputs: token ids below its vocabulary, a padding mask of ones
    after a padded start, segment ids of zeros, images of normal noise at its input size."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for tensor in model.inputs:
        name, shape = tensor.name, [ROWS, *(LENGTH if d is None else d for d in tensor.shape[1:])]
        if name == "token_ids":
            inputs[name] = rng.integers(0, model.vocabulary_size, shape).astype(np.int32)
        elif name == "padding_mask":
            inputs[name] = np.ones(shape, np.int32)
            inputs[name][1, : LENGTH // 4] = 0  # a left-padded row
        elif name == "segment_ids":
            inputs[name] = np.zeros(shape, np.int32)
        else:
            inputs[name] = rng.normal(size=shape).astype(np.float32)
    return inputs


def _outputs(model, inputs):
    out = model(inputs if len(model.inputs) > 1 else next(iter(inputs.values())), training=False)
    found = out if isinstance(out, dict) else {"output": out}
    return {name: keras.ops.convert_to_numpy(value).astype(np.float64) for name, value in found.items()}


def float_keras_hub_model(reference: ExportReference, name: str) -> tuple[keras.Model, keras.Model]:
    """`merged_keras_hub_model` of the run's backbone, refused for a quantized run (format `name` writes floats)."""
    quantization = reference.run.config.task.model.quantization
    if quantization:
        raise GardenError(
            f"--format {name} writes float weights; export the run this {quantization} run was quantized from"
        )
    return merged_keras_hub_model(reference.run.model.get_layer("backbone"))


def judged(name: str, error: float, bound: float, written: keras.Model) -> dict:
    """What an artifact of the backbone measured (its max |Δ| from the run's, KerasHub's class written);
    raises Refused past `bound`."""
    measured = {"max_abs_error": error, "error_bound": bound, "class": type(written).__name__}
    reason = refusal(name, error, bound)
    if reason:
        raise Refused(reason, name, measured)
    return measured


def write_preset(reference: ExportReference, export_dir: str) -> dict:
    """Writes `export_dir/keras_hub` if the reloaded preset passes; returns the manifest."""
    import keras_hub

    trained, plain = float_keras_hub_model(reference, NAME)
    with staged(export_dir, NAME) as staging:
        plain.save_to_preset(staging)
        tokenizer = getattr(reference.task, "tokenizer", None)
        if isinstance(tokenizer, keras_hub.tokenizers.Tokenizer):
            tokenizer.save_to_preset(staging)
        reloaded = keras_hub.models.Backbone.from_preset(staging)
        inputs = checked_inputs(trained)
        ours, theirs = _outputs(trained, inputs), _outputs(reloaded, inputs)
        measured = judged(NAME, max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in ours), BOUND, plain)
    return reference.record(export_dir, NAME, os.path.join(export_dir, NAME), measured)


@EXPORTERS.register(NAME)
def keras_hub_jobs(reference: ExportReference, export_dir: str, workdir: str) -> list[Job]:
    return [(NAME, lambda: write_preset(reference, export_dir))]


keras_hub_jobs.backbone_only = True  # judged against the run's backbone: export.py needs no held-out outputs
