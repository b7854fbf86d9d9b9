"""Static embeddings distilled from a sentence encoder (model2vec's method).

Every token of the teacher's tokenizer (any text encoder family) is run through the teacher alone,
as [SEP] token [CLS] (model2vec's order; the family's end and start tokens), and its embedding is
the `pooling` of the output vectors: their mean (model2vec's), the first or the last. Words of a
corpus that a WordPiece vocabulary splits into pieces can be added as tokens of their own
(model2vec's `vocabulary=`): each is run as [CLS] its pieces [SEP] and pooled over its pieces
(mean), or at the first or last position. PCA reduces the table to `pca_dims`, and each row is
scaled by its SIF weight a / (a + p), where p is the token's Zipf probability estimated from its
rank (its id; added words rank last). A sentence is then the mean of its tokens' rows, split by the
teacher's tokenizer that the folder keeps: no transformer at run time. The table is stored in
float32, float16, or int8 with one scale per row.

    garden distill static --teacher minilm --pca-dims 256 --out runs/static_minilm
"""

import collections
import json
import os
import re
import shutil
import unicodedata

import numpy as np
import tensorflow as tf

from garden.config import TokenizerConfig
from garden.data.checkpoints import checkpoint_dir, is_hub_name, pinned
from garden.data.tokenizers import (
    MERGES,
    family_file_name,
    folder_lowercase,
    folder_tokenizer,
    reads_wordpiece,
    special_id,
    tokenizer_files,
)
from garden.errors import GardenError
from garden.models import hf_import
from garden.models.backbones.static import SUMMARY, TABLE_DTYPES, load_table, save_table, teacher_family
from garden.models.backbones.text_encoder import TextEncoder
from garden.registry import BACKBONES
from garden.text_family import text_family

TEACHERS = {"minilm": "all_minilm_l6_v2"}
POOLINGS = ("mean", "first", "last")
BATCH = 1024
MAX_WORD_PIECES = 16  # an added word's pieces beyond these are cut


def pca(embeddings, dims):
    """Projects centered `embeddings` [n, width] onto their first `dims` principal axes, as
    sklearn's PCA.fit_transform; returns (projected [n, dims], explained variance ratio)."""
    if not 0 < dims <= embeddings.shape[1]:
        raise GardenError(f"--pca-dims {dims} must be between 1 and the teacher's width {embeddings.shape[1]}")
    centered = embeddings - embeddings.mean(axis=0)
    _, singular, axes = np.linalg.svd(centered, full_matrices=False)
    variance = singular**2
    return centered @ axes[:dims].T, float(variance[:dims].sum() / variance.sum())


def sif_weights(count, coefficient):
    """a / (a + p) for `count` tokens whose probability p follows Zipf's law by rank (1 / (rank + 1))."""
    if not 0 < coefficient < 1:
        raise GardenError(f"--sif-coefficient {coefficient} must be between 0 and 1 (model2vec uses 1e-4)")
    inverse_rank = 1.0 / np.arange(2, count + 2)
    probability = inverse_rank / inverse_rank.sum()
    return coefficient / (coefficient + probability)


def teacher_encoder(name):
    """The encoder (mean pooling, no dropout) of a named checkpoint or a checkpoint folder of any text
    encoder family, holding its weights; and the folder."""
    directory, _ = _teacher_family(name)
    return hf_import.encoder(directory, pooling="mean", dropout=0.0), directory


def _is_encoder(backbone):
    return isinstance(backbone, type) and issubclass(backbone, TextEncoder)


def _teacher_family(name):
    """The checkpoint folder of the teacher `name` and its family, refused unless a text encoder's."""
    directory = checkpoint_dir(TEACHERS.get(name, name))
    family = hf_import.family(directory)
    if not _is_encoder(BACKBONES.get(family)):
        encoders = sorted(n for n in BACKBONES.names() if _is_encoder(BACKBONES.get(n)))
        raise GardenError(f"--teacher {name} is a {family} decoder; distill a text encoder: {', '.join(encoders)}")
    return directory, family


def corpus_words(path, vocabulary, limit, min_count=2):
    """Up to `limit` words of the text file `path`, most frequent first (at least `min_count` times),
    that `vocabulary` lacks: lowercased with accents stripped and split at punctuation, as uncased
    BERT's basic tokenizer splits."""
    known, counts = set(vocabulary), collections.Counter()
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = unicodedata.normalize("NFD", line.lower())
            text = "".join(c for c in text if unicodedata.category(c) != "Mn")
            counts.update(word for word in re.findall(r"\w+", text) if word not in known)
    return [word for word, count in counts.most_common(limit) if count >= min_count]


def _pooled(sequence, mask, pooling):
    """[batch, width] of the teacher's `sequence` [batch, length, width] over `mask` [batch, length]."""
    if pooling == "first":
        return sequence[:, 0]
    if pooling == "last":
        return tf.gather(sequence, tf.reduce_sum(tf.cast(mask, tf.int32), axis=1) - 1, batch_dims=1)
    weights = tf.cast(mask, sequence.dtype)[..., None]
    return tf.reduce_sum(sequence * weights, axis=1) / tf.reduce_sum(weights, axis=1)


def _teacher_rows(encoder, token_ids, padding_mask, pooled_mask, pooling):
    """The teacher's outputs for `token_ids` [n, length] whose real tokens `padding_mask` marks,
    pooled over `pooled_mask` (mean) or at the first or last real token, BATCH rows at a time."""
    names = BACKBONES.get(encoder.family).text_inputs

    @tf.function
    def run(ids, padding, pooled):
        inputs = {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": padding}
        sequence = encoder({name: inputs[name] for name in names})["sequence_output"]
        return _pooled(sequence, pooled if pooling == "mean" else padding, pooling)

    batches = [slice(i, i + BATCH) for i in range(0, len(token_ids), BATCH)]
    return np.concatenate([run(token_ids[b], padding_mask[b], pooled_mask[b]).numpy() for b in batches])


def token_embeddings(encoder, count, start, end, pooling="mean"):
    """[count, width]: each token id's teacher output over `end` token `start` ([SEP] token [CLS])."""
    ids = np.arange(count, dtype=np.int32)
    token_ids = np.stack([np.full_like(ids, end), ids, np.full_like(ids, start)], axis=1)
    return _teacher_rows(encoder, token_ids, np.ones_like(token_ids), np.ones_like(token_ids), pooling)


def word_embeddings(encoder, tokenizer, words, start, end, pooling="mean"):
    """[len(words), width]: each word's teacher output over `start` its pieces `end` ([CLS] pieces
    [SEP]), the mean taken over the pieces alone (model2vec's for added words)."""
    pieces = tf.function(
        lambda texts: tokenizer(texts)[:, :MAX_WORD_PIECES].to_tensor(default_value=-1, shape=[None, MAX_WORD_PIECES])
    )
    inner = pieces(tf.constant(words)).numpy()
    counts = (inner >= 0).sum(axis=1)
    length = MAX_WORD_PIECES + 2
    token_ids = np.zeros((len(words), length), np.int32)
    token_ids[:, 0] = start
    token_ids[:, 1:-1] = np.maximum(inner, 0)
    token_ids[np.arange(len(words)), counts + 1] = end
    positions = np.arange(length)[None]
    padding = (positions <= counts[:, None] + 1).astype(np.int32)
    pooled = ((positions >= 1) & (positions <= counts[:, None])).astype(np.int32)
    return _teacher_rows(encoder, token_ids, padding, pooled, pooling)


def _keep_tokenizer(tokenizer, family, directory, staging, words):
    """Writes the teacher's tokenizer into the distilled folder `staging` as `tokenizer_files` finds it
    there: a WordPiece vocab.txt (the added `words` after its tokens), or its SentencePiece model or
    BPE files, copied; and whether it lowercases (tokenizer_config.json's do_lower_case)."""
    if reads_wordpiece(family):
        with open(os.path.join(staging, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"{token}\n" for token in tokenizer.get_vocabulary() + words))
    else:
        for key, path in tokenizer_files(family, TokenizerConfig(), directory).items():
            shutil.copy(path, os.path.join(staging, family_file_name(family, path) if key == "vocabulary" else MERGES))
    lowercase = folder_lowercase(family, directory)
    if lowercase is not None:
        with open(os.path.join(staging, "tokenizer_config.json"), "w") as f:
            json.dump({"do_lower_case": lowercase}, f)


def distill_static(
    teacher, out_dir, pca_dims=256, sif_coefficient=1e-4, pooling="mean", vocabulary=None, added_words=10_000,
    table_dtype="float32",
):  # fmt: skip
    """Writes the table (`embeddings.npy`, and `scales.npy` for int8), the teacher's tokenizer (for a
    WordPiece teacher, `vocab.txt` with the words added from the `vocabulary` corpus file) and
    `static.json` into `out_dir`; returns the summary."""
    if pooling not in POOLINGS:
        raise GardenError(f"--pooling {pooling} is not one of {', '.join(POOLINGS)}")
    if table_dtype not in TABLE_DTYPES:
        raise GardenError(f"--dtype {table_dtype} is not one of {', '.join(TABLE_DTYPES)}")
    if vocabulary and not os.path.isfile(vocabulary):
        raise GardenError(f"--vocabulary {vocabulary} is not a file; give a text file whose words to add")
    directory, family = _teacher_family(teacher)
    if vocabulary and not reads_wordpiece(family):
        raise GardenError(
            f"--vocabulary adds words to a WordPiece vocabulary, and --teacher {teacher} is a {family} model that "
            f"reads {text_family(family).tokenizers[0]}; distill it without --vocabulary"
        )
    tokenizer = folder_tokenizer(family, directory)
    start, end = (special_id(tokenizer, family, role) for role in ("start", "end"))
    words = corpus_words(vocabulary, tokenizer.get_vocabulary(), added_words) if vocabulary else []
    encoder = hf_import.encoder(directory, pooling="mean", dropout=0.0)
    embeddings = token_embeddings(encoder, tokenizer.vocabulary_size(), start, end, pooling)
    if words:
        embeddings = np.concatenate([embeddings, word_embeddings(encoder, tokenizer, words, start, end, pooling)])
    reduced, explained = pca(embeddings, pca_dims)
    table = (reduced * sif_weights(len(embeddings), sif_coefficient)[:, None]).astype(np.float32)
    staging = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    summary = {
        "teacher": pinned(teacher, directory) if is_hub_name(teacher) else teacher,  # the commit or version read
        "family": family,
        "pca_dims": pca_dims,
        "sif_coefficient": sif_coefficient,
        "pooling": pooling,
        "vocabulary_size": len(embeddings),
        "added_words": len(words),
        "dtype": table_dtype,
        "table_bytes": save_table(staging, table, table_dtype),
        "explained_variance": explained,
    }
    _keep_tokenizer(tokenizer, family, directory, staging, words)
    with open(os.path.join(staging, SUMMARY), "w") as f:
        json.dump(summary, f, indent=2)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(staging, out_dir)
    return summary


class StaticEncoder:
    """`encode(texts)`: L2-normalized mean of the distilled rows of each text's tokens, read by the
    teacher's tokenizer kept in the folder."""

    def __init__(self, path):
        self.table = tf.constant(load_table(path))
        self.tokenizer = folder_tokenizer(teacher_family(path) or "static", path)
        self._encode = tf.function(self._vectors)

    def _vectors(self, texts):
        pieces = tf.gather(self.table, self.tokenizer(texts))
        return tf.math.l2_normalize(
            tf.math.divide_no_nan(
                tf.reduce_sum(pieces, axis=1), tf.cast(tf.expand_dims(pieces.row_lengths(), -1), tf.float32)
            ),
            axis=-1,
        )

    def encode(self, texts):
        return self._encode(tf.constant(list(texts))).numpy()
