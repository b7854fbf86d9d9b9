"""Static embeddings distilled from a sentence encoder (model2vec's method).

Every vocabulary token is run through the teacher alone, as [SEP] token [CLS] (model2vec's order),
and its embedding is the mean of the three output vectors. PCA reduces the table to `pca_dims`, and
each row is scaled by its SIF weight a / (a + p), where p is the token's Zipf probability estimated
from its rank (its id). A sentence is then the mean of its tokens' rows: no transformer at run time.

    garden distill static --teacher minilm --pca-dims 256 --out runs/static_minilm
"""

import json
import os
import shutil

import numpy as np
import tensorflow as tf

from garden.config import TokenizerConfig
from garden.data.tokenizers import build_tokenizer
from garden.errors import GardenError
from garden.models import hf_import
from garden.models.backbones.bert import BertEncoder
from garden.models.backbones.static import load_table
from garden.models.pretrained import checkpoint_dir

TEACHERS = {"minilm": "all_minilm_l6_v2"}
BATCH = 1024


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
    """A BertEncoder (mean pooling) with the weights of a named checkpoint or checkpoint folder."""
    directory = checkpoint_dir(TEACHERS.get(name, name))
    encoder = BertEncoder(**hf_import.encoder_params(directory), pooling="mean", dropout=0.0)
    hf_import.load_into(encoder, directory)
    return encoder, directory


def token_embeddings(encoder, vocabulary):
    """[len(vocabulary), width]: each token's teacher output, mean over [SEP] token [CLS]."""
    sep, cls = vocabulary.index("[SEP]"), vocabulary.index("[CLS]")
    run = tf.function(lambda inputs: tf.reduce_mean(encoder(inputs)["sequence_output"], axis=1))
    rows = []
    for start in range(0, len(vocabulary), BATCH):
        ids = np.arange(start, min(start + BATCH, len(vocabulary)), dtype=np.int32)
        token_ids = np.stack([np.full_like(ids, sep), ids, np.full_like(ids, cls)], axis=1)
        inputs = {
            "token_ids": token_ids,
            "segment_ids": np.zeros_like(token_ids),
            "padding_mask": np.ones_like(token_ids),
        }
        rows.append(run(inputs).numpy())
    return np.concatenate(rows)


def distill_static(teacher, out_dir, pca_dims=256, sif_coefficient=1e-4):
    """Writes `embeddings.npy`, `vocab.txt` and `static.json` into `out_dir`; returns the summary."""
    encoder, directory = teacher_encoder(teacher)
    with open(os.path.join(directory, "vocab.txt"), encoding="utf-8") as f:
        vocabulary = f.read().splitlines()
    reduced, explained = pca(token_embeddings(encoder, vocabulary), pca_dims)
    table = (reduced * sif_weights(len(vocabulary), sif_coefficient)[:, None]).astype(np.float32)
    summary = {
        "teacher": teacher,
        "pca_dims": pca_dims,
        "sif_coefficient": sif_coefficient,
        "vocabulary_size": len(vocabulary),
        "explained_variance": explained,
    }
    staging = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    np.save(os.path.join(staging, "embeddings.npy"), table)
    shutil.copy(os.path.join(directory, "vocab.txt"), os.path.join(staging, "vocab.txt"))
    with open(os.path.join(staging, "static.json"), "w") as f:
        json.dump(summary, f, indent=2)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(staging, out_dir)
    return summary


class StaticEncoder:
    """`encode(texts)`: L2-normalized mean of the distilled rows of each text's word pieces."""

    def __init__(self, path):
        self.table = tf.constant(load_table(path))
        self.tokenizer = build_tokenizer("static", TokenizerConfig(vocabulary=os.path.join(path, "vocab.txt")))
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
