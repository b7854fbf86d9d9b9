"""Base class for backbones: a functional model rebuilt from its constructor arguments."""

import inspect

import keras

from garden.errors import GardenError
from garden.text_family import NO_TEXT, TextFamily


class Backbone(keras.Model):
    """A functional `keras.Model` with dict inputs and outputs. Outputs include `pooled_output`
    [batch, width] and, for sequences, `sequence_output` [batch, length, width]. A subclass's
    constructor arguments (its signature's, defaults applied; not `dtype` and `**kwargs`) are bound
    once, when it is called, and kept as attributes before its `__init__` runs, so that `get_config()`
    rebuilds it; a constructor that settles a value otherwise (a size read from a file, a list as a
    tuple) keeps that with `keep_arguments(...)`. A text backbone names the inputs it reads in
    `text_inputs` and declares how its family reads text in `text_family` (tokenizer kinds, special
    tokens, pair packing; see garden/text_family.py). `asset_params` names the
    constructor arguments that are paths of files or folders it reads: a run folder keeps copies."""

    text_inputs = ("token_ids", "segment_ids", "padding_mask")
    text_family: TextFamily = NO_TEXT
    asset_params: tuple[str, ...] = ()

    @classmethod
    def tokenizer_source(cls, params: dict) -> tuple[str, str]:
        """The registered backbone type whose tokenizer and special tokens read this backbone's text
        ('': its own), and the folder holding that tokenizer's files ('': task.init_checkpoint)."""
        return "", ""

    @classmethod
    def check_vocabulary(cls, params: dict, size: int) -> None:
        """Raises a GardenError when a tokenizer of `size` ids gives ids this backbone (built with
        `params`) has no embedding for."""
        rows = params.get("vocabulary_size", inspect.signature(cls.__init__).parameters.get("vocabulary_size"))
        rows = getattr(rows, "default", rows)
        if isinstance(rows, int) and size > rows:
            raise GardenError(
                f"the tokenizer gives {size} ids and the backbone embeds {rows}; set "
                f"task.model.backbone.params.vocabulary_size={size} or give the vocabulary it was sized for"
            )

    def text_input_layers(self) -> dict[str, keras.KerasTensor]:
        """int32 [batch, length] `keras.Input`s named by `text_inputs`."""
        return {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in self.text_inputs}

    def train_for(self, features: str) -> None:
        """Told that the task trains on the output `features` alone; a backbone may then skip, in
        training, the work only its other outputs need."""

    def check_training(self, runtime) -> None:
        """Raises a GardenError when this backbone cannot train under `runtime` (a RuntimeConfig)."""

    def __new__(cls, *args, **kwargs):
        backbone = super().__new__(cls, *args, **kwargs)
        backbone._argument_names = []
        backbone.keep_arguments(**_named_arguments(cls.__init__, backbone, *args, **kwargs))
        return backbone

    def keep_arguments(self, **arguments) -> None:
        """Keeps constructor arguments as attributes, for `get_config()`; a value given again replaces the bound one."""
        self._argument_names = list(dict.fromkeys([*self._argument_names, *arguments]))
        for name, value in arguments.items():
            setattr(self, name, value)

    def constructor_arguments(self) -> dict:
        """The constructor arguments as kept: what `get_config()` rebuilds the backbone from."""
        return {name: getattr(self, name) for name in self._argument_names}

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self.dtype_policy.name,
            **self.constructor_arguments(),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _named_arguments(init, *args, **kwargs) -> dict:
    """The named arguments of a call of `init`, defaults applied, but the first (`self`) and `dtype`.
    Bound partially: Keras also calls `cls.__new__(cls)` alone, and `__init__` refuses a wrong call."""
    signature = inspect.signature(init)
    bound = signature.bind_partial(*args, **kwargs)
    bound.apply_defaults()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    first = next(iter(signature.parameters))
    return {
        key: value
        for key, value in bound.arguments.items()
        if key not in (first, "dtype") and signature.parameters[key].kind in named
    }
