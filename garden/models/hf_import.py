"""Imports a Hugging Face BERT checkpoint folder (config.json, model.safetensors) into a Garden encoder.

Works offline. The weights go through KerasHub's own BERT converter: the folder is staged
with the key names that converter reads (`bert.` prefix, LayerNorm `gamma`/`beta`), since
`BertModel` checkpoints such as all-MiniLM-L6-v2 store them without the prefix and with
`weight`/`bias`.
"""

import json
import os
import shutil
import tempfile

import keras_hub
from safetensors.numpy import load_file, save_file

from garden.errors import GardenError

# Garden BertEncoder parameter -> Hugging Face config.json key
SIZES = {
    "vocabulary_size": "vocab_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "hidden_dim": "hidden_size",
    "intermediate_dim": "intermediate_size",
    "max_sequence_length": "max_position_embeddings",
    "num_segments": "type_vocab_size",
}


def read_config(directory):
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(directory, "model.safetensors")):
        raise GardenError(
            f"{directory} is not a Hugging Face checkpoint folder (needs config.json and model.safetensors)"
        )
    with open(path) as f:
        return json.load(f)


def encoder_params(directory):
    """The BertEncoder parameters that match the checkpoint's architecture."""
    config = read_config(directory)
    return {ours: config[theirs] for ours, theirs in SIZES.items()}


def _keras_hub_name(key):
    key = key if key.startswith("bert.") else "bert." + key
    if ".LayerNorm." in key:
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
    return key


def load_into(encoder, directory):
    """Loads the checkpoint in `directory` into `encoder` (a BertEncoder of the same sizes)."""
    expected = encoder_params(directory)
    wrong = {k: (getattr(encoder, k), v) for k, v in expected.items() if getattr(encoder, k) != v}
    if wrong:
        fixes = ", ".join(f"task.model.backbone.params.{k}={v}" for k, (_, v) in wrong.items())
        raise GardenError(f"the checkpoint in {directory} does not fit the backbone's sizes; set {fixes}")
    with tempfile.TemporaryDirectory(prefix="garden-hf-") as staging:
        tensors = load_file(os.path.join(directory, "model.safetensors"))
        save_file({_keras_hub_name(k): v for k, v in tensors.items()}, os.path.join(staging, "model.safetensors"))
        shutil.copy(os.path.join(directory, "config.json"), staging)
        imported = keras_hub.models.BertBackbone.from_preset(staging, load_weights=True)
    encoder.encoder.set_weights(imported.get_weights())
