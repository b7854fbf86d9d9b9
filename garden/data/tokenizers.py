"""The tokenizer resolver: a backbone declares the tokenizer kinds whose ids it reads
(`Backbone.tokenizers`, the first its default); naming one that does not fit is an error.

- `wordpiece` (the BERT family: `bert`, `distil_bert`, and `static`, distilled from one): a
  `vocab.txt` from `task.model.tokenizer.vocabulary` (a file, a checkpoint folder, or a named
  checkpoint) or else from `task.init_checkpoint`.
- `character`: the 256 byte values of UTF-8 text, so ASCII text is one id per character; no vocabulary.
- `sentencepiece`: a `.model` file (`train_sentencepiece` makes one).
"""

import hashlib
import io
import os
import re

import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text

from garden.data import catalog
from garden.errors import GardenError
from garden.models.pretrained import checkpoint_dir
from garden.registry import BACKBONES


def _tokenizers(backbone_type):
    """The tokenizer kinds a backbone reads (none for a backbone built by a plain function)."""
    return getattr(BACKBONES.get(backbone_type), "tokenizers", ())


def tokenizer_type(backbone_type, requested=""):
    fitting = _tokenizers(backbone_type)
    if not fitting:
        readers = [name for name in BACKBONES.names() if _tokenizers(name)]
        raise GardenError(f"backbone '{backbone_type}' reads no text; text tasks take one of: {', '.join(readers)}")
    if requested and requested not in fitting:
        raise GardenError(
            f"tokenizer '{requested}' does not fit backbone '{backbone_type}', which reads {' or '.join(fitting)} ids; "
            f"set task.model.tokenizer.type={fitting[0]} or leave it empty"
        )
    return requested or fitting[0]


def vocabulary_file(vocabulary, init_checkpoint=""):
    source = vocabulary or init_checkpoint
    if not source:
        raise GardenError(
            "no vocabulary: set task.model.tokenizer.vocabulary (a vocab.txt or checkpoint) or task.init_checkpoint"
        )
    path = source if os.path.isfile(source) else os.path.join(checkpoint_dir(source), "vocab.txt")
    if not os.path.isfile(path):
        raise GardenError(f"no vocab.txt in {os.path.dirname(path)}; point task.model.tokenizer.vocabulary at one")
    return path


def tokenizer_file(backbone_type, tokenizer_config, init_checkpoint=""):
    """The file the tokenizer of `backbone_type` reads (a vocab.txt or SentencePiece model), or '' for none."""
    kind = tokenizer_type(backbone_type, tokenizer_config.type)
    if kind == "wordpiece":
        return vocabulary_file(tokenizer_config.vocabulary, init_checkpoint)
    return tokenizer_config.vocabulary if kind == "sentencepiece" else ""


def build_tokenizer(backbone_type, tokenizer_config, init_checkpoint=""):
    """The in-graph tokenizer (a KerasHub layer) for `backbone_type`."""
    kind = tokenizer_type(backbone_type, tokenizer_config.type)
    if kind == "character":
        return keras_hub.tokenizers.ByteTokenizer(lowercase=False, dtype="int32")
    if kind == "sentencepiece":
        if not os.path.isfile(tokenizer_config.vocabulary):
            raise GardenError(
                f"no SentencePiece model at '{tokenizer_config.vocabulary}'; set task.model.tokenizer.vocabulary "
                "to a .model file (a causal_lm run trains one on its training texts when it is empty)"
            )
        return keras_hub.tokenizers.SentencePieceTokenizer(proto=tokenizer_config.vocabulary, dtype="int32")
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


def train_sentencepiece(texts, vocabulary_size):
    """The path of a SentencePiece BPE model of `vocabulary_size` pieces for `texts`, trained once
    into Garden's cache. Newlines and runs of spaces are kept as pieces and unknown characters fall
    back to bytes, so decoding gives the text back; the trainer runs on one thread, so the same
    texts always give the same model."""
    import sentencepiece

    settings = dict(
        vocab_size=vocabulary_size,
        model_type="bpe",
        character_coverage=1.0,
        byte_fallback=True,
        num_threads=1,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        add_dummy_prefix=False,
        user_defined_symbols=["\n"],
        max_sentence_length=1 << 16,
    )
    digest = hashlib.sha256(repr(sorted(settings.items())).encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    path = catalog.cache_dir() / "sentencepiece" / f"{digest.hexdigest()[:16]}.model"
    if not path.is_file():
        model = io.BytesIO()
        paragraphs = [p + "\n\n" for text in texts for p in text.split("\n\n") if p]
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(paragraphs), model_writer=model, minloglevel=2, **settings
            )
        except RuntimeError as error:
            needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(error))
            fix = f"raise it to at least {needed.group(1)}" if needed else "lower it"
            raise GardenError(
                f"SentencePiece could not train {vocabulary_size} pieces on these texts "
                f"({' '.join(str(error).split())[:200]}); {fix} (task.model.backbone.params.vocabulary_size)"
            ) from None
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".{os.getpid()}.tmp")  # one per process: concurrent trainers write the same model
        staging.write_bytes(model.getvalue())
        os.replace(staging, path)
    return str(path)
