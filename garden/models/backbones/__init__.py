"""Backbones: one file each, registered in `garden.registry.BACKBONES`."""

from garden.models.backbones import (  # noqa: F401  (registers)
    albert,
    bert,
    deberta_v3,
    decoder,
    distil_bert,
    electra,
    gemma,
    gemma3,
    gpt2,
    image_families,
    keras_hub,
    llama,
    mistral,
    qwen2,
    qwen3,
    resnet,
    roberta,
    static,
    xlm_roberta,
)
