"""How a backbone family reads text, declared once in the family's file (`text_family = TextFamily(...)`
on its backbone class) and read through `text_family(backbone_type)` by the tokenizers, the text
tasks, the generator and the checkpoint importer."""

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from garden.registry import BACKBONES

WORDPIECE_SPECIAL_TOKENS = MappingProxyType({"start": "[CLS]", "end": "[SEP]", "pad": "[PAD]", "mask": "[MASK]"})
# Garden's text encoder argument -> the Hugging Face config.json key most families size it by
HF_SIZES = MappingProxyType(
    {
        "vocabulary_size": "vocab_size",
        "num_layers": "num_hidden_layers",
        "num_heads": "num_attention_heads",
        "hidden_dim": "hidden_size",
        "intermediate_dim": "intermediate_size",
    }
)


@dataclasses.dataclass(frozen=True)
class TextFamily:
    """A backbone family's text: the tokenizer kinds whose ids it reads (`tokenizers`, its default first;
    none: it reads no text, see garden/data/tokenizers.py), the tokens it packs texts with by role
    (`special_tokens`), and how:

    - `vocabulary_file`: its default tokenizer's file in a Hugging Face checkpoint folder;
    - `hub_tokenizer` (with `hub_tokenizer_arguments`): the KerasHub tokenizer class (keras_hub.models)
      that knows its default kind's ids; `other_hub_tokenizers`: another kind's class, by kind;
    - `lowercase_kinds`: the kinds that task.model.tokenizer.lowercase applies to;
    - `separator_tokens`: end tokens between two segments (`[CLS] a [SEP] b [SEP]`: 1; `<s> a </s></s> b
      </s>`: 2); `packs_special_tokens`: False for a backbone that reads the word pieces alone;
    - `starts_with_token`, `stops_at_end_token`: a decoder's prompts begin with the start token, and its
      continuations end at the end token, as the family was trained;
    - `hf_model_types`: the Hugging Face config.json `model_type`s it imports, `hf_sizes` its constructor
      arguments read from that config.json's keys (see garden/models/hf_import.py)."""

    tokenizers: tuple[str, ...] = ()
    special_tokens: Mapping[str, str] = dataclasses.field(default_factory=dict)
    vocabulary_file: str = ""
    hub_tokenizer: str = ""
    hub_tokenizer_arguments: Mapping[str, object] = dataclasses.field(default_factory=dict)
    other_hub_tokenizers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    lowercase_kinds: tuple[str, ...] = ("wordpiece",)
    separator_tokens: int = 1
    packs_special_tokens: bool = True
    starts_with_token: bool = False
    stops_at_end_token: bool = False
    hf_model_types: tuple[str, ...] = ()
    hf_sizes: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for field in dataclasses.fields(self):  # declared once: its tables cannot change after
            if isinstance(value := getattr(self, field.name), dict):
                object.__setattr__(self, field.name, MappingProxyType(value))


NO_TEXT = TextFamily()


def text_family(backbone_type: str) -> TextFamily:
    """The text family a registered backbone declares; NO_TEXT for one that reads no text (an image
    backbone; a plain function registered as a backbone declares nothing)."""
    return getattr(BACKBONES.get(backbone_type), "text_family", NO_TEXT)
