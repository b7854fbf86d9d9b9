"""XLM-RoBERTa text encoder: RoBERTa's architecture (KerasHub's `XLMRobertaBackbone`) read through
a SentencePiece model (`sentencepiece.bpe.model`) with fairseq's ids (`<s>`=0, `<pad>`=1, `</s>`=2,
`<unk>`=3, then the pieces), as KerasHub's `XLMRobertaTokenizer` maps them."""

import dataclasses
import functools

import keras_hub

from garden.models.backbones.roberta import RobertaEncoder
from garden.registry import BACKBONES


@BACKBONES.register("xlm_roberta")
class XLMRobertaEncoder(RobertaEncoder):
    """Inputs `token_ids`, `padding_mask` [batch, length]; outputs `sequence_output` and `pooled_output`
    as RoBERTa's."""

    family = "xlm_roberta"
    text_family = dataclasses.replace(
        RobertaEncoder.text_family,
        tokenizers=("sentencepiece",),
        hub_tokenizer="XLMRobertaTokenizer",
        vocabulary_file="sentencepiece.bpe.model",
        hf_model_types=("xlm-roberta",),
    )
    hub_backbone = keras_hub.models.XLMRobertaBackbone

    __init__ = functools.partialmethod(RobertaEncoder.__init__, vocabulary_size=250002)
