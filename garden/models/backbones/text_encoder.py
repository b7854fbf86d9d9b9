"""Base of the transformer text encoders: a KerasHub text backbone (the layer `encoder`) on Garden's
text inputs, its sequence pooled into one vector. A family (one file each: bert.py, roberta.py, ...)
declares its tokenizer, special tokens, pair packing and Hugging Face size keys (`text_family`; see
garden/text_family.py), and maps a Hugging Face checkpoint's tensors onto its weights (`hf_weights`;
see garden/models/hf_import.py)."""

from collections.abc import Callable

import keras
import numpy as np

from garden.errors import GardenError
from garden.models.backbones.backbone import Backbone
from garden.models.pooling import MaskedMeanPooling, check_pooling


@keras.saving.register_keras_serializable("garden")
def gelu_approximate(x):
    """GELU's tanh approximation (Hugging Face's gelu_new)."""
    return keras.activations.gelu(x, approximate=True)


ACTIVATIONS = {"gelu": keras.activations.gelu, "gelu_approximate": gelu_approximate}
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate"}

Tensors = Callable[[str], np.ndarray]  # a checkpoint tensor by its Hugging Face name (no model prefix)


class TextEncoder(Backbone):
    """Outputs `sequence_output` [batch, length, hidden_dim] and `pooled_output` [batch, hidden_dim]:
    `pooling="cls"` is the family's pooler on the first token where it has one (BERT, ALBERT) and the
    first token's vector otherwise; `pooling="mean"` the mean over unpadded tokens (sentence-transformers).
    A pooler left unused is kept out of training."""

    family = ""  # the registered name, for messages
    hub_backbone: type = keras.Model  # the KerasHub backbone class it wraps
    hub_names: dict[str, str] = {}  # constructor arguments that the KerasHub backbone names otherwise
    uses_pooler = False  # `pooling="cls"` reads the KerasHub backbone's `pooled_output`
    hf_prefix = (
        ""  # the prefix of its tensors in a task model's checkpoint ("roberta."), which KerasHub's converters read
    )
    keras_hub_converts = (
        False  # KerasHub converts its checkpoints (BERT, DistilBERT, ALBERT); else `hf_weights` maps them
    )

    def __init__(self, dtype=None, **kwargs):
        """Builds the layer `encoder` from the family's constructor arguments, kept already (see Backbone):
        all are the KerasHub backbone's (renamed by `hub_names`) but `pooling` and, where a family has
        them, the feed-forward `activation` and BERT's `padding_free` (see `encoder_class`)."""
        arguments = {
            self.hub_names.get(key, key): value
            for key, value in self.constructor_arguments().items()
            if key not in ("pooling", "activation", "padding_free")
        }
        encoder = self.encoder_class()(**arguments, dtype=dtype, name="encoder")
        if "activation" in self._argument_names:
            set_feedforward_activation(encoder, self.activation, self.family)
        pooling = self.pooling
        check_pooling(self.family, pooling)
        inputs = self.text_input_layers()
        outputs = encoder(inputs)
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        if pooling == "mean":
            pooled = MaskedMeanPooling(name="mean_pooling", dtype=dtype)(sequence, inputs["padding_mask"])
        elif self.uses_pooler:
            pooled = outputs["pooled_output"]
        else:
            pooled = keras.layers.Lambda(lambda x: x[:, 0], name="cls_pooling", dtype=dtype)(sequence)
        if "pooled_dense" in [layer.name for layer in encoder.layers] and not (self.uses_pooler and pooling == "cls"):
            encoder.get_layer("pooled_dense").trainable = False
        super().__init__(
            inputs=inputs, outputs={"sequence_output": sequence, "pooled_output": pooled}, dtype=dtype, **kwargs
        )

    def encoder_class(self) -> type:
        """The class of the layer `encoder`."""
        return self.hub_backbone

    @property
    def encoder(self) -> keras.Model:
        return self.get_layer("encoder")

    @classmethod
    def hf_params(cls, config: dict) -> dict:
        """The constructor arguments that match a Hugging Face `config.json`: those its family's
        `hf_sizes` name, and those of `hf_settings` (which refuses what the family cannot express first)."""
        settings = cls.hf_settings(config)
        return {**{ours: config[theirs] for ours, theirs in cls.text_family.hf_sizes.items()}, **settings}

    @classmethod
    def hf_settings(cls, config: dict) -> dict:
        """The constructor arguments a `config.json` sets otherwise than by one size key; GardenError for
        a setting the family cannot express."""
        return {}

    def hf_weights(self, tensor: Tensors, config: dict) -> dict[str, np.ndarray]:
        """The KerasHub encoder's weights, by path, from the checkpoint's tensors."""
        raise NotImplementedError

    @staticmethod
    def keras_hub_key(key: str) -> str:
        """A prefixed tensor name as the family's KerasHub converter reads it."""
        return key


def require(config: dict, key: str, expected, family: str) -> None:
    """Refuses a checkpoint whose `config[key]` is a variant the family's KerasHub model does not compute."""
    if key in config and config[key] != expected:
        raise GardenError(
            f"this {family} checkpoint sets {key}={config[key]!r}; Garden's {family} computes {key}={expected!r} only"
        )


def hf_activation(config: dict, family: str) -> str:
    name = config.get("hidden_act", "gelu")
    if name not in HF_ACTIVATIONS:
        raise GardenError(f"this {family} checkpoint uses hidden_act={name!r}; Garden's {family} runs gelu or gelu_new")
    return HF_ACTIVATIONS[name]


def set_feedforward_activation(encoder: keras.Model, activation: str, family: str) -> None:
    """Gives every transformer layer of `encoder` the feed-forward `activation` (KerasHub fixes one per family)."""
    if activation not in ACTIVATIONS:
        raise GardenError(f"unknown activation '{activation}' for backbone {family}; choose {' or '.join(ACTIVATIONS)}")
    for layer in encoder._flatten_layers(include_self=False):
        if layer.name == "feedforward_intermediate_dense":
            layer.activation = ACTIVATIONS[activation]


def transformer_layer(tensor: Tensors, hf: str, ours: str, projections=("query", "key", "value")):
    """A BERT-style Hugging Face layer (`hf`, e.g. "encoder.layer.0.") as the weights of KerasHub's
    TransformerEncoder `ours` (e.g. "transformer_layer_0/"); `projections` are the layer's names for
    the attention's query, key and value. hf_import reshapes kernels to KerasHub's per-head shapes."""
    weights = {}
    for keras_name, hf_name in zip(("query", "key", "value"), projections):
        weights.update(dense(tensor, f"{hf}attention.self.{hf_name}", f"{ours}self_attention_layer/{keras_name}"))
    weights.update(dense(tensor, f"{hf}attention.output.dense", f"{ours}self_attention_layer/attention_output"))
    weights.update(layer_norm(tensor, f"{hf}attention.output.LayerNorm", f"{ours}self_attention_layer_norm"))
    weights.update(dense(tensor, f"{hf}intermediate.dense", f"{ours}feedforward_intermediate_dense"))
    weights.update(dense(tensor, f"{hf}output.dense", f"{ours}feedforward_output_dense"))
    weights.update(layer_norm(tensor, f"{hf}output.LayerNorm", f"{ours}feedforward_layer_norm"))
    return weights


def layer_norm(tensor: Tensors, hf: str, keras_name: str) -> dict[str, np.ndarray]:
    return {f"{keras_name}/gamma": tensor(f"{hf}.weight"), f"{keras_name}/beta": tensor(f"{hf}.bias")}


def dense(tensor: Tensors, hf: str, keras_name: str) -> dict[str, np.ndarray]:
    return {f"{keras_name}/kernel": tensor(f"{hf}.weight").T, f"{keras_name}/bias": tensor(f"{hf}.bias")}
