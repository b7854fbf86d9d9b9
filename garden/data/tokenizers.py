"""The tokenizer resolver: a backbone's architecture decides its tokenizer.

A BERT-family backbone (`bert`, `distil_bert`, and `static`, distilled from one) reads WordPiece ids, so its tokenizer is WordPiece over a
`vocab.txt`; the vocabulary comes from `task.model.tokenizer.vocabulary` (a file, a
checkpoint folder, or a named checkpoint) or else from `task.init_checkpoint`. Naming a
tokenizer type that does not fit the backbone is an error.
"""

import os

import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text

from garden.errors import GardenError
from garden.models.pretrained import checkpoint_dir

TOKENIZER_OF_BACKBONE = {"bert": "wordpiece", "distil_bert": "wordpiece", "static": "wordpiece"}


def tokenizer_type(backbone_type, requested=""):
    if backbone_type not in TOKENIZER_OF_BACKBONE:
        raise GardenError(f"backbone '{backbone_type}' reads no text; text tasks take one of: {', '.join(TOKENIZER_OF_BACKBONE)}")
    fitting = TOKENIZER_OF_BACKBONE[backbone_type]
    if requested and requested != fitting:
        raise GardenError(
            f"tokenizer '{requested}' does not fit backbone '{backbone_type}', which reads {fitting} ids; "
            f"set task.model.tokenizer.type={fitting} or leave it empty"
        )
    return fitting


def vocabulary_file(vocabulary, init_checkpoint=""):
    source = vocabulary or init_checkpoint
    if not source:
        raise GardenError("no vocabulary: set task.model.tokenizer.vocabulary (a vocab.txt or checkpoint) or task.init_checkpoint")
    path = source if os.path.isfile(source) else os.path.join(checkpoint_dir(source), "vocab.txt")
    if not os.path.isfile(path):
        raise GardenError(f"no vocab.txt in {os.path.dirname(path)}; point task.model.tokenizer.vocabulary at one")
    return path


def build_tokenizer(backbone_type, tokenizer_config, init_checkpoint=""):
    """The in-graph tokenizer (a KerasHub layer) for `backbone_type`."""
    tokenizer_type(backbone_type, tokenizer_config.type)
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary_file(tokenizer_config.vocabulary, init_checkpoint),
        lowercase=tokenizer_config.lowercase,
        strip_accents=tokenizer_config.lowercase,  # as uncased BERT vocabularies expect
        dtype="int32",
    )


def serving_tokenizer(tokenizer):
    """tensorflow-text's FastBertTokenizer with the vocabulary and normalization of `tokenizer` (a
    KerasHub WordPieceTokenizer): the same ids, and unlike KerasHub's regex splitting it converts to
    TFLite as custom ops that `tensorflow_text.tflite_registrar` provides. Exports check the ids agree."""
    return tf_text.FastBertTokenizer(
        vocab=tokenizer.get_vocabulary(),
        token_out_type=tf.int32,
        unknown_token=tokenizer.oov_token,
        lower_case_nfd_strip_accents=tokenizer.lowercase,
    )
