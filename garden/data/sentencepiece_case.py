"""A SentencePiece model that lowercases and strips accents in its own normalization, as
transformers' AlbertTokenizer does to a text before SentencePiece reads it (`do_lower_case`,
`keep_accents=False`; ALBERT's vocabularies hold lowercase pieces only).

The model's normalization rule (its precompiled character map) is replaced by one that maps each
code point, and each sequence the original rule maps, as Python's NFKD, accent stripping, `lower()`
and then the original rule would. KerasHub's tokenizer and tensorflow-text's
FastSentencepieceTokenizer (TFLite) both run that map, so one .model file serves training, the
SavedModel and TFLite alike, with no string op outside the tokenizer. transformers' two-character
rewrites of quotes (`` and '' to ") are in the map too.
"""

import hashlib
import os
import sys
import unicodedata

import sentencepiece
from sentencepiece import sentencepiece_model_pb2

from garden.data import catalog

QUOTES = ("``", "''")  # transformers' AlbertTokenizer writes each as "


def _uncased(text: str) -> str:
    for quote in QUOTES:
        text = text.replace(quote, '"')
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def lowercased_model(path: str) -> str:
    """The path of a copy of the SentencePiece model at `path` that lowercases and strips accents
    itself, made once into Garden's cache."""
    with open(path, "rb") as f:
        proto = f.read()
    digest = hashlib.sha256(proto + b"lowercase, no accents").hexdigest()[:16]
    target = catalog.cache_dir() / "sentencepiece" / f"{digest}.lowercase.model"
    if target.is_file():
        return str(target)
    rule = sentencepiece.SentencePieceNormalizer(
        model_proto=proto, add_dummy_prefix=False, escape_whitespaces=False, remove_extra_whitespaces=False
    )
    sources = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    sources += [source for source, _ in rule.Decompile() if len(source) > 1] + list(QUOTES)
    targets = rule.Normalize([_uncased(source) for source in sources])
    mapping = [(source, target) for source, target in zip(sources, targets) if source != target]
    compiled = sentencepiece.SentencePieceNormalizer(norm_map=mapping).serialized_normalizer_spec()
    model = sentencepiece_model_pb2.ModelProto.FromString(proto)
    model.normalizer_spec.precompiled_charsmap = sentencepiece_model_pb2.NormalizerSpec.FromString(
        compiled
    ).precompiled_charsmap
    model.normalizer_spec.name += "_lowercase_no_accents"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_suffix(f".{os.getpid()}.tmp")  # one per process: concurrent runs write the same model
    staging.write_bytes(model.SerializeToString())
    os.replace(staging, target)
    return str(target)
