"""Warm starts of a backbone from a checkpoint on disk (`task.init_checkpoint`, a hub name already
fetched by garden/data/checkpoints.py): a Garden run folder, a Keras `.weights.h5` file, or a folder
with a config.json: a KerasHub preset, or a Hugging Face checkpoint, which a text encoder or decoder
imports (garden/models/hf_import.py). The one route of every task that loads a checkpoint; the head
starts fresh."""

import os

import keras
import numpy as np
import tensorflow as tf

from garden.errors import GardenError, first_line
from garden.models import hf_import
from garden.models.lora import base_weights, merged_values
from garden.registry import TASKS
from garden.resolve import experiment_config
from garden.run_folder import RunFolder, restore


def load_backbone(backbone: keras.Model, source: str) -> str:
    """Copies the weights of `source` into `backbone`; returns what they came from, for the log."""
    if RunFolder(source).started():
        weights, step = _run_backbone(source)
        _copy_values(weights, backbone, source)
        return f"the backbone of {source} at step {step}"
    if os.path.isfile(os.path.join(source, "config.json")) and isinstance(backbone, hf_import.IMPORTED):
        hf_import.load_into(backbone, source)
        return f"checkpoint {source}"
    if os.path.isfile(os.path.join(source, "config.json")):
        _copy(_preset(source), _hub(backbone, source), source)
        return f"KerasHub preset {source}"
    if source.endswith(".weights.h5") and os.path.isfile(source):
        _copy(*_weights_file(backbone, source), source)
        return f"weights file {source}"
    raise GardenError(
        f"task.init_checkpoint {source} is not a Garden run folder (config.yaml), a checkpoint folder (config.json: "
        "a KerasHub preset or a Hugging Face checkpoint) or a .weights.h5 file"
    )


def _run_backbone(source: str) -> tuple[list[tuple[keras.Variable, np.ndarray]], int]:
    """((weight, value) of the backbone of run folder `source`, with LoRA adapters merged into their
    kernels; the step of those weights), from the inference weights a reader takes by default (the
    best validation's where the run keeps them, else the newest), built in float32 from its config."""
    folder = RunFolder(source)
    config = experiment_config(config_files=[folder.config_path], overrides=[folder.asset_overrides()])
    if config.task.model.quantization:
        raise GardenError(
            f"task.init_checkpoint {source} is a quantized run ({config.task.model.quantization}); warm start from "
            "the run it was quantized from"
        )
    path, _ = folder.pick_weights(best_subdir=config.trainer.best_checkpoint_export_subdir)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        task = TASKS.get(config.task.type)(config.task)
        models = task.build_models()
    finally:
        keras.config.set_dtype_policy(policy)
    restore(tf.train.Checkpoint(model=task.checkpointed(models)), path).assert_consumed()
    trained = next(iter(models.values())).get_layer("backbone")  # a multitask's heads share it
    return list(zip(base_weights(trained), merged_values(trained))), int(path.rsplit("-", 1)[-1])


def _hub(backbone, source):
    if not hasattr(backbone, "hub"):
        raise GardenError(
            f"task.init_checkpoint {source} is a KerasHub preset; backbone {backbone.name} is not a KerasHub one "
            "(use keras_hub.CLASS or a family such as resnet_v1 of the same architecture)"
        )
    return backbone.hub


def _preset(source):
    import keras_hub

    try:
        return keras_hub.models.Backbone.from_preset(source)
    except (ValueError, OSError, KeyError, TypeError) as error:
        reason = first_line(error)
        raise GardenError(f"cannot load KerasHub preset {source}: {reason}") from error


def _weights_file(backbone, source):
    """(a fresh copy of `backbone`, or of its KerasHub model, holding the weights of `source`; the model
    of `backbone` to copy them into)."""
    reason = ""
    for candidate in [backbone] + ([backbone.hub] if hasattr(backbone, "hub") else []):
        copy = candidate.__class__.from_config(candidate.get_config())
        try:
            copy.load_weights(source)
        except ValueError as error:
            reason = reason or first_line(error)
            continue
        return copy, candidate
    raise GardenError(f"cannot load {source} into backbone {backbone.name}: {reason}")


def _copy(source, target, where):
    """Assigns `source`'s weights to `target`'s (to its base weights when it has adapters), in order."""
    _copy_values([(weight, weight) for weight in source.weights], target, where)


def _copy_values(source, target, where):
    """Assigns the values of `source` ((weight, value) pairs) to `target`'s weights (its base weights when it
    has adapters), in order; a count or shape that differs is one line."""
    target = base_weights(target)
    if len(source) != len(target):
        raise GardenError(
            f"task.init_checkpoint {where} holds {len(source)} backbone weights and this backbone "
            f"{len(target)}: they are different architectures; build the backbone as {where} did"
        )
    for (theirs, _), ours in zip(source, target):
        if tuple(theirs.shape) != tuple(ours.shape):
            raise GardenError(
                f"task.init_checkpoint {where}: weight {theirs.path} has shape {tuple(theirs.shape)} there and "
                f"{tuple(ours.shape)} here ({ours.path}); build the backbone as {where} did"
            )
    for (_, value), ours in zip(source, target):
        ours.assign(value)
