"""Joins a registered backbone and head into the task model: named inputs in, `logits` out.

A head names the backbone output it reads (`head.features`, such as `pooled_output` or
`sequence_output`); a head that scores every position and `reads_padding_mask` gets the text's
`padding_mask` too."""

import keras

from garden.errors import GardenError, first_line
from garden.models.freezing import freeze
from garden.models.fused_batch_norm import fuse_batch_norms
from garden.models.lora import add_adapters
from garden.registry import BACKBONES, HEADS


def build_task_model(model_config, name, backbone=None):
    """The model of `model_config`; pass `backbone` to share one between several heads."""
    head = _build(HEADS, "head", model_config.head)
    if backbone is None:  # a shared backbone serves other heads too, which may read other outputs
        backbone = build_backbone(model_config)
        backbone.train_for(head.features)
    features = backbone(backbone.input)[head.features]
    if getattr(head, "reads_padding_mask", False):
        outputs = head(features, padding_mask=backbone.input["padding_mask"])
    else:
        outputs = head(features)  # logits, or a dict holding them
    outputs = outputs if isinstance(outputs, dict) else {"logits": outputs}
    return keras.Model(inputs=backbone.input, outputs=outputs, name=name)


def build_backbone(model_config) -> keras.Model:
    """The backbone of `model_config`, frozen as `trainable_backbone_blocks` says or adapted as `lora`
    says, its batch norms training on TensorFlow's fused kernel."""
    backbone = _build(BACKBONES, "backbone", model_config.backbone)
    fuse_batch_norms(backbone)
    freeze(backbone, model_config.trainable_backbone_blocks, "task.model.trainable_backbone_blocks")
    add_adapters(backbone, model_config.lora)
    return backbone


def backbone_variables(models) -> list:
    """The trainable variables of the `models`' backbones (a dict of task models), each once."""
    return _each_once(v for model in models.values() for v in model.get_layer("backbone").trainable_variables)


def _build(registry, part, component):
    """`registry.build` of a config component; a value its layers refuse is one line naming the keys."""
    try:
        return registry.build(component.type, component.params.as_dict(), name=part)
    except (ValueError, TypeError) as error:
        reason = first_line(error)
        raise GardenError(
            f"cannot build {part} '{component.type}' from task.model.{part}.params ({reason}); fix those values"
        ) from error


def _each_once(variables):
    """`variables` without repeats (models that share a backbone share its variables), in order."""
    return list({id(variable): variable for variable in variables}.values())


def trainable_variables(models):
    """The trainable variables of all `models` (a dict), each once, in a fixed order."""
    return _each_once(v for model in models.values() for v in model.trainable_variables)


def seed_states(models):
    """The random-seed states of all `models` (dropout's SeedGenerators), each once, in a fixed order:
    Keras keeps them in `model.variables` but not in `model.weights`, so a checkpoint of the model
    alone misses them and a resumed run would draw other dropout masks."""
    weights = {id(weight) for model in models.values() for weight in model.weights}
    return _each_once(v for model in models.values() for v in model.variables if id(v) not in weights)
