"""Freezing a backbone, whole or all but its last blocks, for fine-tuning.

A block is a run of layers named as KerasHub's and Garden's blocks are (`stack0_block1_*` in ResNet,
`block_2_0` in MobileNet, `block3a_*` in EfficientNet, `stage_1_block_0_*` in CSPNet,
`transformer_block_4` in ViT, `transformer_layer_3` in BERT, `stage1_block0_*` in Garden's resnet);
layers between blocks (a stem before the first, a final convolution or norm after the last) go with
the block before them. Frozen layers keep their weights, and their batch norms run on their moving
statistics."""

import re

import keras

from garden.errors import GardenError

_BLOCK = re.compile(r"^(.*?(?:block_\d+_\d+|block\d+[a-z]?|block_\d+|layer_\d+))(?:_|$)")


def _leaves(layer):
    """The layers holding weights inside `layer`, in order; a layer named as a block is one leaf, and
    so is a layer with weights of its own beside its children's (DeBERTa's relative embeddings)."""
    children = layer._flatten_layers(include_self=False, recursive=False)
    if children and (isinstance(layer, keras.Model) or not _BLOCK.match(layer.name)):
        leaves = [leaf for child in children for leaf in _leaves(child)]
        held = {id(weight) for leaf in leaves for weight in leaf.weights}
        if not isinstance(layer, keras.Model) and any(id(weight) not in held for weight in layer.weights):
            return [layer]
        return leaves
    return [layer] if layer.weights else []


def backbone_blocks(backbone: keras.Model) -> tuple[list, list[list]]:
    """(the layers before the first block, the blocks as lists of layers) of `backbone`."""
    stem, blocks, keys = [], [], []
    for leaf in _leaves(backbone):
        match = _BLOCK.match(leaf.name)
        if match and (not keys or match.group(1) != keys[-1]):
            keys.append(match.group(1))
            blocks.append([])
        (blocks[-1] if blocks else stem).append(leaf)
    return stem, blocks


def freeze(backbone: keras.Model, trainable_blocks: int, where: str) -> None:
    """Freezes all of `backbone` but its last `trainable_blocks` blocks (-1: freeze nothing; 0: all)."""
    if trainable_blocks < 0:
        return
    if trainable_blocks == 0:
        backbone.trainable = False
        return
    stem, blocks = backbone_blocks(backbone)
    if not blocks:
        raise GardenError(
            f"{where}={trainable_blocks}: Garden finds no blocks in backbone {backbone.name} to count; set it to 0 "
            "(freeze the backbone) or -1 (train all of it)"
        )
    for layer in stem + [layer for block in blocks[: max(len(blocks) - trainable_blocks, 0)] for layer in block]:
        layer.trainable = False
