"""Imports a Hugging Face checkpoint folder (config.json, model.safetensors or its sharded index) or
a KerasHub preset folder (config.json naming its backbone class, model.weights.h5, as
`save_to_preset` writes them) into a Garden text encoder or pretrained decoder, offline.
`config.json` picks the family: Hugging Face's `model_type` (bert, distilbert, albert, roberta,
xlm-roberta, electra, deberta-v2; gpt2, gemma, gemma2, gemma3_text, llama, mistral, qwen2, qwen3) or
KerasHub's `class_name`.

Families that KerasHub converts itself (BERT, DistilBERT, ALBERT: `TextEncoder.keras_hub_converts`)
go through its converter, the folder staged with the key names it reads. RoBERTa, XLM-R, ELECTRA and
DeBERTa map tensors by the family's `hf_weights` (KerasHub 0.29 converted none of them; 0.32
converts RoBERTa and XLM-R, whose mapping here is checked against transformers in the tests).
Decoders (garden/models/backbones/hub_decoder.py) load through KerasHub's converters as they are,
or through the one their family names (`weights_converter`: Mistral's rounds weights to float16).
"""

import contextlib
import inspect
import json
import math
import os
import shutil
import tempfile

from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from garden.errors import GardenError, first_line
from garden.models.backbones.hub_decoder import HubDecoder
from garden.models.backbones.text_encoder import TextEncoder
from garden.models.lora import base_weights, set_base_weights
from garden.registry import BACKBONES

IMPORTED = (TextEncoder, HubDecoder)  # the backbone classes whose checkpoints Garden imports


def read_config(directory: str) -> dict:
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise GardenError(f"{directory} is not a checkpoint folder: it has no config.json")
    with open(path) as f:
        config = json.load(f)
    weights = ["model.weights.h5"] if _is_preset(config) else ["model.safetensors", "model.safetensors.index.json"]
    if not _is_preset(config) and _tensorflow_weights(directory):
        raise GardenError(
            f"the checkpoint in {directory} holds TensorFlow weights (transformers' TF classes save them, under "
            "names such as 'transformer/wte/weight'), and Garden reads PyTorch's names; save it once with "
            "transformers' PyTorch class (from_pretrained(folder, from_tf=True).save_pretrained(new_folder)) "
            "and import that folder"
        )
    if not any(os.path.isfile(os.path.join(directory, name)) for name in weights):
        raise GardenError(f"{directory} is not a checkpoint folder: it has a config.json and no {weights[0]}")
    return config


def _tensorflow_weights(directory: str) -> bool:
    """Whether the folder's weights are transformers' TensorFlow ones: a tf_model.h5 alone, or a
    model.safetensors marked as TensorFlow's ("format": "tf" in its metadata)."""
    path = os.path.join(directory, "model.safetensors")
    if not os.path.isfile(path):
        return os.path.isfile(os.path.join(directory, "tf_model.h5"))
    try:
        with safe_open(path, "np") as file:
            return (file.metadata() or {}).get("format") == "tf"
    except (SafetensorError, OSError):  # unreadable: loading says so
        return False


def _is_preset(config: dict) -> bool:
    return "class_name" in config and "model_type" not in config


def _importers() -> dict[str, type]:
    return {
        name: BACKBONES.get(name)
        for name in BACKBONES.names()
        if isinstance(BACKBONES.get(name), type) and issubclass(BACKBONES.get(name), IMPORTED)
    }


def family(directory: str) -> str:
    """The registered backbone type that imports the checkpoint in `directory`."""
    return _family(read_config(directory), directory)


def _family(config: dict, directory: str) -> str:
    if _is_preset(config):
        found = {cls.hub_backbone.__name__: name for name, cls in _importers().items()}
        kind, key = config["class_name"], "KerasHub"
    else:
        found = {
            model_type: name for name, cls in _importers().items() for model_type in cls.text_family.hf_model_types
        }
        kind, key = config.get("model_type", ""), "Hugging Face"
    if kind not in found:
        raise GardenError(
            f"the checkpoint in {directory} is a {key} '{kind}'; Garden imports {', '.join(sorted(found))}"
        )
    return found[kind]


def _check_family(found: str, wanted: str, directory: str) -> None:
    if found != wanted:
        raise GardenError(
            f"the checkpoint in {directory} holds a {found} model, not {wanted}; set task.model.backbone.type={found}"
        )


def encoder_params(directory: str) -> dict:
    """The backbone parameters that match the checkpoint's architecture."""
    config = read_config(directory)
    return _params(BACKBONES.get(_family(config, directory)), config, directory)


def checkpoint_sizes(backbone_type: str, directory: str) -> dict:
    """The parameters (dropout aside) that size a `backbone_type` backbone as the checkpoint in
    `directory`; {} when that backbone imports no checkpoint. A checkpoint of another family is
    refused here, before anything is built at the wrong sizes."""
    if backbone_type not in _importers():
        return {}
    config = read_config(directory)
    _check_family(_family(config, directory), backbone_type, directory)
    return {k: v for k, v in _params(BACKBONES.get(backbone_type), config, directory).items() if k != "dropout"}


def _params(encoder_class, config, directory):
    """The backbone parameters of a Hugging Face config, or a KerasHub preset's backbone arguments that
    are the backbone's parameters too."""
    if not _is_preset(config):
        try:
            return encoder_class.hf_params(config)
        except KeyError as missing:
            raise GardenError(
                f"the config.json in {directory} lacks {missing}, a key of every '{config.get('model_type')}' config; "
                "put the checkpoint's own config.json beside its weights"
            ) from None
    parameters = inspect.signature(encoder_class.__init__).parameters
    arguments = {"vocabulary_size" if k == "vocab_size" else k: v for k, v in config["config"].items()}
    return {k: v for k, v in arguments.items() if k in parameters and k != "dtype"}


def encoder(directory: str, **params) -> TextEncoder:
    """The family's encoder, sized as the checkpoint in `directory` (and `params`), holding its weights."""
    built = BACKBONES.get(family(directory))(**{**encoder_params(directory), **params})
    load_into(built, directory)
    return built


def load_into(encoder: TextEncoder | HubDecoder, directory: str) -> None:
    """Loads the checkpoint in `directory` into `encoder` (a backbone of the same family and sizes)."""
    config = read_config(directory)
    _check_family(_family(config, directory), getattr(encoder, "family", encoder.name), directory)
    expected = _params(type(encoder), config, directory)
    wrong = {k: v for k, v in expected.items() if k != "dropout" and getattr(encoder, k) != v}
    if wrong:
        fixes = ", ".join(f"task.model.backbone.params.{k}={v}" for k, v in wrong.items())
        raise GardenError(f"the checkpoint in {directory} does not fit the backbone's sizes; set {fixes}")
    if isinstance(encoder, HubDecoder):
        set_base_weights(encoder.hub, _hub_weights(encoder, config, directory))
        return
    if _is_preset(config):
        set_base_weights(encoder.encoder, encoder.hub_backbone.from_preset(directory).get_weights())
        return
    path = os.path.join(directory, "model.safetensors")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as error:  # truncated, empty, or sharded (an encoder's weights are one file)
        raise GardenError(f"cannot read {path}: {first_line(error)}; put the checkpoint's weights there") from None
    if encoder.keras_hub_converts:
        set_base_weights(encoder.encoder, _converted_by_keras_hub(encoder, tensors, directory).get_weights())
        return
    prefix = encoder.hf_prefix

    def tensor(name):
        for key in (name, prefix + name):
            if key in tensors:
                return tensors[key]
        raise GardenError(f"the checkpoint in {directory} has no tensor '{name}', which a {encoder.family} model has")

    _assign(encoder.encoder, encoder.hf_weights(tensor, config), directory)


@contextlib.contextmanager
def _keras_hub_converting(directory):
    """What KerasHub raises as it reads and converts the checkpoint in `directory`, as one line."""
    try:
        yield
    except (KeyError, ValueError, OSError, SafetensorError) as error:
        raise GardenError(f"KerasHub cannot convert the checkpoint in {directory}: {first_line(error)}") from None


def _from_preset(hub_backbone, directory):
    """KerasHub's backbone from a preset or Hugging Face folder, its errors in one line."""
    with _keras_hub_converting(directory):
        return hub_backbone.from_preset(directory)


def _hub_weights(decoder, config, directory):
    """The weights of KerasHub's backbone of a preset or Hugging Face folder; a Hugging Face folder
    ported by `decoder.weights_converter` where the family names one (a KerasHub converter module)."""
    if not decoder.weights_converter or _is_preset(config):
        return _from_preset(decoder.hub_backbone, directory).get_weights()
    import importlib

    from keras_hub.src.utils.transformers.safetensor_utils import SafetensorLoader

    converter = importlib.import_module(f"keras_hub.src.utils.transformers.{decoder.weights_converter}")
    hub = decoder.hub_backbone.from_config(decoder.hub.get_config())
    hub.tie_word_embeddings = False  # what Llama's converter asks; the families that port through it tie none
    with _keras_hub_converting(directory), SafetensorLoader(directory) as loader:
        converter.convert_weights(hub, loader, config)
    return hub.get_weights()


def _converted_by_keras_hub(encoder, tensors, directory):
    """The checkpoint through KerasHub's converter, staged with the key names it reads: prefixed with
    the family's name (a BertModel checkpoint such as all-MiniLM-L6-v2 has no `bert.`), as the
    family's `keras_hub_key` spells them."""
    prefix = encoder.hf_prefix
    staged = {encoder.keras_hub_key(k if k.startswith(prefix) else prefix + k): v for k, v in tensors.items()}
    with tempfile.TemporaryDirectory(prefix="garden-hf-") as staging:
        save_file(staged, os.path.join(staging, "model.safetensors"))
        shutil.copy(os.path.join(directory, "config.json"), staging)
        sizes = {k: v for k, v in encoder.encoder.get_config().items() if k not in ("name", "trainable", "dtype")}
        with _keras_hub_converting(directory):  # at the encoder's sizes: KerasHub's BERT converter fixes 512 positions
            return encoder.hub_backbone.from_preset(staging, load_weights=True, **sizes)


def _assign(model, weights, directory):
    """Assigns `weights` (by variable path) to `model`, each reshaped to its variable's shape (a
    Hugging Face [hidden, hidden] projection to KerasHub's [hidden, heads, head_dim])."""
    variables = {variable.path: variable for variable in base_weights(model)}
    missing = [path for path in variables if path not in weights]
    if missing:
        raise GardenError(f"the checkpoint in {directory} gives no value for {missing[0]} ({len(missing)} weights)")
    for path, value in weights.items():
        variable = variables[path]
        if value.size != math.prod(variable.shape):
            raise GardenError(
                f"the checkpoint in {directory} holds {value.shape} values for {path}, which is {tuple(variable.shape)}"
            )
        variable.assign(value.reshape(variable.shape))
