"""Static token embeddings (model2vec): an embedding table and a mean over the unpadded tokens."""

import json
import os

import keras
import numpy as np

from garden.errors import GardenError
from garden.models.backbones.backbone import Backbone
from garden.models.pooling import MaskedMeanPooling
from garden.registry import BACKBONES
from garden.text_family import WORDPIECE_SPECIAL_TOKENS, TextFamily

TABLE_DTYPES = ("float32", "float16", "int8")
SUMMARY = "static.json"  # what `garden distill static` wrote, the teacher's family among it


def _table_file(path):
    file = os.path.join(path, "embeddings.npy")
    if not os.path.isfile(file):
        raise GardenError(f"no embeddings.npy in {path}; make one with 'garden distill static --out {path}'")
    return file


def load_table(path):
    """The embedding table [vocabulary, dims] of a `garden distill static` folder, in float32 (an int8
    table times its per-row scales)."""
    table = np.load(_table_file(path))
    if table.dtype == np.int8:
        return table.astype(np.float32) * np.load(os.path.join(path, "scales.npy"))[:, None]
    return table.astype(np.float32)


def save_table(path, table, dtype="float32") -> int:
    """Writes `table` into the folder `path` as `dtype`: float32, float16, or int8 with one scale per
    row (max |row| / 127, in `scales.npy`); returns the bytes of the arrays written."""
    stored = 0
    if dtype == "int8":
        scales = (np.maximum(np.abs(table).max(axis=1), 1e-12) / 127).astype(np.float32)
        np.save(os.path.join(path, "scales.npy"), scales)
        table, stored = np.round(table / scales[:, None]), scales.nbytes
    table = table.astype(dtype)
    np.save(os.path.join(path, "embeddings.npy"), table)
    return stored + table.nbytes


def teacher_family(path) -> str:
    """The backbone family of the teacher a `garden distill static` folder was distilled from, whose
    tokenizer (its files copied into the folder) reads the table's text; '' for a folder that does not
    say (distilled before it was recorded: a WordPiece teacher)."""
    file = os.path.join(path, SUMMARY)
    if not os.path.isfile(file):
        return ""
    with open(file) as f:
        return json.load(f).get("family", "")


@BACKBONES.register("static")
class StaticEmbedding(Backbone):
    """Inputs `token_ids`, `padding_mask` [batch, length]; outputs `sequence_output` (each token's row)
    and `pooled_output` (their mean over unpadded tokens). `distilled_path` is a `garden distill static` folder
    whose table initializes the embeddings (and sets their size), and whose teacher's tokenizer, kept in
    the folder, reads the text (`tokenizer_source`); without it the table starts random and reads WordPiece."""

    text_family = TextFamily(
        tokenizers=("wordpiece",),
        special_tokens=WORDPIECE_SPECIAL_TOKENS,
        packs_special_tokens=False,  # a text is the mean of its word pieces' rows, as model2vec encodes it
    )
    asset_params = ("distilled_path",)  # its table sets the embeddings' shape, so inference needs it too

    text_inputs = ("token_ids", "padding_mask")

    @classmethod
    def tokenizer_source(cls, params):
        path = params.get("distilled_path", "")
        return (teacher_family(path), path) if path else ("", "")

    @classmethod
    def check_vocabulary(cls, params, size):
        path = params.get("distilled_path", "")
        if not path:
            return super().check_vocabulary(params, size)
        rows = np.load(_table_file(path), mmap_mode="r").shape[0]
        if size != rows:
            raise GardenError(
                f"the tokenizer gives {size} ids and the static table in {path} has {rows} rows, one per token of "
                "its own vocabulary; leave task.model.tokenizer.vocabulary empty to read the folder's"
            )

    def __init__(
        self, distilled_path="", vocabulary_size=30522, hidden_dim=256, trainable_embeddings=True, dtype=None, **kwargs
    ):
        table = load_table(distilled_path) if distilled_path else None
        if table is not None:
            vocabulary_size, hidden_dim = table.shape
        inputs = self.text_input_layers()
        embedding = keras.layers.Embedding(
            vocabulary_size,
            hidden_dim,
            trainable=trainable_embeddings,
            name="token_embedding",
            dtype=dtype,
            embeddings_initializer=keras.initializers.Constant(table) if table is not None else "uniform",
        )
        sequence = embedding(inputs["token_ids"])
        pooled = MaskedMeanPooling(name="mean_pooling", dtype=dtype)(sequence, inputs["padding_mask"])
        super().__init__(
            inputs=inputs, outputs={"sequence_output": sequence, "pooled_output": pooled}, dtype=dtype, **kwargs
        )
        self.keep_arguments(vocabulary_size=vocabulary_size, hidden_dim=hidden_dim)  # a table's own size
