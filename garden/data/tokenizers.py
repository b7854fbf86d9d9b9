"""The tokenizer resolver: a backbone family declares the tokenizer kinds whose ids it reads
(`TextFamily.tokenizers`, the first its default; garden/text_family.py); naming one that does not fit
is an error. A text encoder family reads its default kind through its own KerasHub tokenizer
(`hub_tokenizer`: special tokens and id layout, such as XLM-R's fairseq ids).

- `wordpiece` (BERT, DistilBERT, ELECTRA, and `static`, distilled from one): a `vocab.txt`.
- `byte_bpe` (RoBERTa): GPT-2's byte-level BPE, a `vocab.json` and its `merges.txt`
  (`task.model.tokenizer.merges`; empty: the one beside the vocabulary).
- `sentencepiece` (ALBERT, DeBERTa-v3, XLM-R; decoders): a SentencePiece `.model` file
  (`train_sentencepiece` makes one). ALBERT's text is lowercased and its accents stripped, as
  transformers' AlbertTokenizer does, inside the model's own normalization (`lowercased_model`).
- `character`: the 256 byte values of UTF-8 text, so ASCII text is one id per character; no vocabulary.

`task.model.tokenizer.vocabulary` is the file, or a checkpoint folder (or named checkpoint) holding
it under the family's Hugging Face name (`spm.model`, `vocab.json`, ...) or as a KerasHub preset
keeps it (`assets/tokenizer/`); empty, the `task.init_checkpoint` folder.
"""

import hashlib
import inspect
import io
import json
import os
import re

import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text

from garden.data import catalog
from garden.data.checkpoints import cached_dir, checkpoint_dir, is_hub_name
from garden.data.sentencepiece_case import lowercased_model
from garden.errors import GardenError
from garden.registry import BACKBONES
from garden.text_family import text_family

FILE_NAMES = {"wordpiece": "vocab.txt", "byte_bpe": "vocab.json", "sentencepiece": "tokenizer.model"}
MERGES = "merges.txt"  # a byte-level BPE's merges beside its vocab.json
HF_TOKENIZER = "tokenizer.json"  # Hugging Face's fast tokenizer file: a byte-level BPE's vocabulary and merges in one
PRESET_FILES = {  # where a KerasHub preset folder keeps them
    "wordpiece": "assets/tokenizer/vocabulary.txt",
    "byte_bpe": "assets/tokenizer/vocabulary.json",
    "sentencepiece": "assets/tokenizer/vocabulary.spm",
}
# The KerasHub tokenizers that tensorflow-text has a TFLite-runnable twin of (`serving_tokenizer`)
TFLITE_TWINNED = (keras_hub.tokenizers.WordPieceTokenizer, keras_hub.tokenizers.SentencePieceTokenizer)
GENERIC = {  # the KerasHub tokenizer of a kind, for backbones that name none
    "wordpiece": keras_hub.tokenizers.WordPieceTokenizer,
    "byte_bpe": keras_hub.tokenizers.BytePairTokenizer,
    "sentencepiece": keras_hub.tokenizers.SentencePieceTokenizer,
}


def _kind(backbone_type, requested="") -> str:
    """The tokenizer kind a `backbone_type` backbone reads `requested` text as ('' for one that is not
    registered or reads no text)."""
    kinds = text_family(backbone_type).tokenizers if backbone_type in BACKBONES.names() else ()
    return (requested or kinds[0]) if kinds else ""


def reads_wordpiece(backbone_type, requested="") -> bool:
    """Whether a `backbone_type` backbone (registered or not) reads `requested` text as WordPiece."""
    return _kind(backbone_type, requested) == "wordpiece"


def lowercases(backbone_type, requested="") -> bool:
    """Whether `task.model.tokenizer.lowercase` applies to a `backbone_type` backbone's `requested`
    tokenizer kind: WordPiece, and the kinds a family names in `lowercase_kinds` (ALBERT's
    SentencePiece, lowercased as transformers' AlbertTokenizer lowercases)."""
    return _kind(backbone_type, requested) in text_family(backbone_type).lowercase_kinds


def tokenizer_type(backbone_type, requested=""):
    fitting = text_family(backbone_type).tokenizers
    if not fitting:
        readers = [name for name in BACKBONES.names() if text_family(name).tokenizers]
        raise GardenError(f"backbone '{backbone_type}' reads no text; text tasks take one of: {', '.join(readers)}")
    if requested and requested not in fitting:
        raise GardenError(
            f"tokenizer '{requested}' does not fit backbone '{backbone_type}', which reads {' or '.join(fitting)} ids; "
            f"set task.model.tokenizer.type={fitting[0]} or leave it empty"
        )
    return requested or fitting[0]


def _family_file(backbone_type, kind):
    """The file name the backbone's tokenizer of `kind` has in a checkpoint folder."""
    family = text_family(backbone_type)
    own = family.vocabulary_file
    return own if own and kind == family.tokenizers[0] else FILE_NAMES[kind]


def family_file_name(backbone_type, path) -> str:
    """The name under which a checkpoint folder holds `path`, the vocabulary file of `backbone_type`'s
    default tokenizer, for `tokenizer_files` to find it there (a KerasHub preset's included)."""
    return (
        HF_TOKENIZER
        if _is_hf_tokenizer(path)
        else _family_file(backbone_type, text_family(backbone_type).tokenizers[0])
    )


def tokenizer_files(backbone_type, tokenizer_config, init_checkpoint="", chat=False) -> dict[str, str]:
    """The files the tokenizer of `backbone_type` reads, by their `task.model.tokenizer` key
    (`vocabulary`, and `merges` for byte_bpe; with `chat`, a decoder's `chat_template` where there is
    one); empty for the character tokenizer."""
    kind = tokenizer_type(backbone_type, tokenizer_config.type)
    if tokenizer_config.merges and kind != "byte_bpe":
        raise GardenError(
            f"task.model.tokenizer.merges is read by byte-level BPE tokenizers only, and backbone '{backbone_type}' "
            f"reads {kind} ids; leave it empty"
        )
    if kind == "character":
        return {}
    name = _family_file(backbone_type, kind)
    source = tokenizer_config.vocabulary or init_checkpoint
    if is_hub_name(source):
        source = checkpoint_dir(source)
    if not source and kind != "sentencepiece":
        raise GardenError(
            f"no vocabulary: set task.model.tokenizer.vocabulary (a {name} or checkpoint folder) "
            "or task.init_checkpoint"
        )
    if kind == "sentencepiece" and not os.path.isdir(source) and not os.path.isfile(source):
        raise GardenError(
            f"no SentencePiece model at '{source}'; set task.model.tokenizer.vocabulary to a .model file "
            "(a causal_lm run trains one on its training texts when it is empty)"
        )
    if os.path.isfile(source):
        path = source
    else:
        folder = checkpoint_dir(source)
        names = (name, PRESET_FILES[kind], *((HF_TOKENIZER,) if kind == "byte_bpe" else ()))
        found = [p for p in names if os.path.isfile(os.path.join(folder, p))]
        if not found:
            raise GardenError(f"no {name} in {folder}; point task.model.tokenizer.vocabulary at one")
        path = os.path.join(folder, found[0])
    files = {"vocabulary": path}
    template = (tokenizer_config.chat_template or _chat_template_file(init_checkpoint)) if chat else ""
    if template:
        if not os.path.isfile(template):
            raise GardenError(f"no chat template at {template}; set task.model.tokenizer.chat_template to a file")
        files["chat_template"] = template
    if kind == "byte_bpe" and not _is_hf_tokenizer(path):  # a tokenizer.json holds its merges
        files["merges"] = tokenizer_config.merges or os.path.join(os.path.dirname(path), MERGES)
        if not os.path.isfile(files["merges"]):
            raise GardenError(
                f"no BPE merges at {files['merges']}; set task.model.tokenizer.merges to the merges.txt of {path}"
            )
    return files


def _is_hf_tokenizer(path):
    return os.path.basename(path) == HF_TOKENIZER or path.endswith("-" + HF_TOKENIZER)  # a run's asset copy


def _hf_tokenizer_arguments(path):
    """A byte-level BPE's vocabulary, merges and special tokens from Hugging Face's tokenizer.json (as
    KerasHub's Llama 3 converter reads it: every added token but the reserved ones)."""
    with open(path) as file:
        model, added = (found := json.load(file))["model"], found.get("added_tokens", [])
    if model.get("type") != "BPE":
        raise GardenError(f"{path} holds a {model.get('type')} tokenizer; Garden reads its byte-level BPE")
    vocabulary, merges = dict(model["vocab"]), model["merges"]
    merges = [" ".join(merge) if isinstance(merge, list) else merge for merge in merges]
    special = {t["content"] for t in added if not t["content"].startswith("<|reserved_special_token_")}
    vocabulary.update({t["content"]: t["id"] for t in added if t["content"] in special})
    return {"vocabulary": vocabulary, "merges": merges, "misc_special_tokens": special}


def tokenizer_family(backbone_config) -> tuple[str, str]:
    """The backbone type whose tokenizer and special tokens read the text of a backbone (a
    ComponentConfig), and the folder holding that tokenizer's files ('': task.init_checkpoint): the
    backbone's own, or those its `tokenizer_source` names (a static table's teacher and folder)."""
    source = getattr(BACKBONES.get(backbone_config.type), "tokenizer_source", None)
    family, folder = source(backbone_config.params.as_dict()) if source else ("", "")
    return family or backbone_config.type, folder


def special_id(tokenizer, backbone_type, role) -> int:
    """The id of `backbone_type`'s special token for `role` (start, end, pad, mask): a family's KerasHub
    tokenizer knows it (XLM-R's maps specials outside SentencePiece's ids, and its `token_to_id`
    fails in KerasHub 0.29), else the vocabulary does."""
    known = getattr(tokenizer, f"{role}_token_id", None)
    return known if known is not None else tokenizer.token_to_id(text_family(backbone_type).special_tokens[role])


def folder_tokenizer(backbone_type, folder):
    """The tokenizer of `backbone_type` read from the files in `folder` (a checkpoint or a distilled
    folder), lowercasing as the folder says."""
    from garden.config import TokenizerConfig

    lowercase = folder_lowercase(backbone_type, folder)
    return build_tokenizer(backbone_type, TokenizerConfig(lowercase=lowercase), init_checkpoint=folder)


def folder_tokenizer_type(backbone_type, folder) -> str:
    """The tokenizer kind a checkpoint folder's files call for when it is not the backbone's default:
    byte_bpe for a folder with Hugging Face's tokenizer.json and no default vocabulary (Llama 3's)."""
    kinds = text_family(backbone_type).tokenizers
    if not kinds or "byte_bpe" not in kinds[1:] or not os.path.isfile(os.path.join(folder, HF_TOKENIZER)):
        return ""
    return "" if os.path.isfile(os.path.join(folder, _family_file(backbone_type, kinds[0]))) else "byte_bpe"


def folder_lowercase(backbone_type, folder, requested="") -> bool | None:
    """Whether the tokenizer in a checkpoint (or distilled) folder lowercases, for a tokenizer kind
    that `lowercases`: Hugging Face's tokenizer_config.json `do_lower_case`, or a KerasHub preset's
    tokenizer.json `lowercase`; None when the folder does not say, or the kind does not lowercase."""
    if not folder or not os.path.isdir(folder) or not lowercases(backbone_type, requested):
        return None
    for name, keys in (("tokenizer_config.json", ("do_lower_case",)), ("tokenizer.json", ("config", "lowercase"))):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path) as file:
                found = json.load(file)
            for key in keys:
                found = found.get(key) if isinstance(found, dict) else None
            if isinstance(found, bool):
                return found
    return None


def _chat_template_file(init_checkpoint):
    """The checkpoint folder's chat template file: chat_template.jinja, or a tokenizer_config.json holding one."""
    init_checkpoint = cached_dir(init_checkpoint)  # a run's hub checkpoint, where it is at hand
    if not os.path.isdir(init_checkpoint):
        return ""
    jinja, config = (os.path.join(init_checkpoint, n) for n in ("chat_template.jinja", "tokenizer_config.json"))
    if os.path.isfile(jinja):
        return jinja
    if os.path.isfile(config):
        with open(config) as file:
            return config if "chat_template" in json.load(file) else ""
    return ""


# KerasHub 0.32 runs a tokenizer called outside a tf.function in Python (lists and numpy out); Garden's
# run the TensorFlow path everywhere, as its serving graphs do
TENSORFLOW_PATH = {"dtype": "int32", "_allow_python_workflow": False}


def character_tokenizer() -> keras_hub.tokenizers.ByteTokenizer:
    """KerasHub's ByteTokenizer, its byte table built here, eagerly: KerasHub 0.32 builds it inside
    whichever tf.function first detokenizes, where the next function cannot reach it."""
    tokenizer = keras_hub.tokenizers.ByteTokenizer(lowercase=False, **TENSORFLOW_PATH)
    with tf.init_scope():  # eagerly, even when built while a function traces
        tokenizer.detokenize(tf.constant([[1]]))
    return tokenizer


def build_tokenizer(backbone_type, tokenizer_config, init_checkpoint=""):
    """The in-graph tokenizer (a KerasHub layer) for `backbone_type`."""
    kind = tokenizer_type(backbone_type, tokenizer_config.type)
    if not lowercases(backbone_type, kind) and tokenizer_config.lowercase is not None:
        raise GardenError(
            "task.model.tokenizer.lowercase applies to WordPiece vocabularies and ALBERT's SentencePiece; "
            f"{backbone_type}'s {kind} tokenizer normalizes text as its own model says: leave it unset"
        )
    if kind == "character":
        return character_tokenizer()
    files = tokenizer_files(backbone_type, tokenizer_config, init_checkpoint)
    family = text_family(backbone_type)
    own = family.hub_tokenizer if kind == family.tokenizers[0] else ""
    own = family.other_hub_tokenizers.get(kind, own)
    tokenizer_class = getattr(keras_hub.models, own) if own else GENERIC[kind]
    if kind == "wordpiece":
        lowercase = tokenizer_config.lowercase is not False  # unset: uncased, as most BERT vocabularies
        return tokenizer_class(
            vocabulary=files["vocabulary"],
            lowercase=lowercase,
            strip_accents=lowercase,  # as uncased BERT vocabularies expect
            **TENSORFLOW_PATH,
        )
    if kind == "byte_bpe" and _is_hf_tokenizer(files["vocabulary"]):
        arguments = _hf_tokenizer_arguments(files["vocabulary"])
        if "misc_special_tokens" not in inspect.signature(tokenizer_class.__init__).parameters:  # Qwen 3's
            arguments["unsplittable_tokens"] = sorted(arguments.pop("misc_special_tokens"))
        return tokenizer_class(**arguments, **TENSORFLOW_PATH)
    if kind == "byte_bpe":
        return tokenizer_class(vocabulary=files["vocabulary"], merges=files["merges"], **TENSORFLOW_PATH)
    own_arguments = family.hub_tokenizer_arguments if own == family.hub_tokenizer else {}
    proto = files["vocabulary"]
    if lowercases(backbone_type, kind) and tokenizer_config.lowercase is not False:  # unset: as transformers' default
        proto = lowercased_model(proto)
    try:
        return tokenizer_class(proto=proto, **own_arguments, **TENSORFLOW_PATH)
    except ValueError as error:  # a family's tokenizer checks that the model holds its special pieces
        raise GardenError(f"{files['vocabulary']} does not fit backbone {backbone_type}: {error}") from None


def serving_tokenizer(tokenizer):
    """A function from strings [batch] to `tokenizer`'s ids (ragged [batch, None]) in ops that TFLite
    runs as tensorflow-text custom ops (`tensorflow_text.tflite_registrar`), where they exist:
    FastBertTokenizer for WordPiece (KerasHub's regex splitting does not convert) and
    FastSentencepieceTokenizer for SentencePiece (XLM-R's fairseq ids applied). Byte-level BPE has
    none: its KerasHub tokenizer serves SavedModels, and TFLite's converter names the op it lacks.
    Exports check the ids against Keras."""
    if not isinstance(tokenizer, TFLITE_TWINNED):
        return tokenizer
    if isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        fast = tf_text.FastBertTokenizer(
            vocab=tokenizer.get_vocabulary(),
            token_out_type=tf.int32,
            unknown_token=tokenizer.oov_token,
            lower_case_nfd_strip_accents=tokenizer.lowercase,
        )
        return fast.tokenize
    fast = tf_text.FastSentencepieceTokenizer(model=tokenizer.proto)  # its own normalization (ALBERT's lowercasing) too
    if isinstance(tokenizer, keras_hub.models.XLMRobertaTokenizer):  # as its `tokenize`: unknown 0 -> 3, then +1
        shift = lambda ids: tf.where(ids == 0, tokenizer.unk_token_id - 1, ids) + 1  # noqa: E731
        return lambda strings: tf.ragged.map_flat_values(shift, fast.tokenize(strings))
    return fast.tokenize


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
