"""Readers for the text tasks beyond classification: CoNLL tagging files, SQuAD question answering,
multiple-choice JSONL, plain text lines, and TFRecord files of `tf.train.Example`."""

import json

import numpy as np
import tensorflow as tf

from garden.data.catalog import existing_file
from garden.data.examples import Examples
from garden.errors import GardenError, did_you_mean


def read_conll(path):
    """CoNLL columns (a word first, its tag last; a blank line ends a sentence) as (sentences, tags)."""
    sentences, tags, words, word_tags = [], [], [], []
    for line in open(existing_file(path), encoding="utf-8").read().splitlines() + [""]:
        fields = line.split()
        if fields and fields[0] != "-DOCSTART-":
            words.append(fields[0])
            word_tags.append(fields[-1])
        elif words:
            sentences.append(words)
            tags.append(word_tags)
            words, word_tags = [], []
    return sentences, tags


def tagged_examples(sentences, tags, label_names=None):
    """`text` (words joined by spaces) and labels [sentences, longest] of tag ids, -1 past the end."""
    names = list(label_names) if label_names else sorted({t for sentence in tags for t in sentence})
    index = {name: i for i, name in enumerate(names)}
    labels = np.full((len(sentences), max(map(len, sentences))), -1, np.int64)
    for row, sentence in enumerate(tags):
        unknown = set(sentence) - set(index)
        if unknown:
            raise GardenError(f"tags {sorted(unknown)} are not among the training tags {names}")
        labels[row, : len(sentence)] = [index[t] for t in sentence]
    return Examples({"text": np.array([" ".join(s) for s in sentences], object)}, labels, names)


def json_lines(path, fields=()):
    """(line number, object) of each line of a JSON-lines file that is not blank, read by Python's json,
    one line at a time. A line that is not JSON, holds no JSON object or lacks one of `fields` is one
    GardenError naming it. Lines end at \\n, as a streamed file's do; a UTF-8 byte order mark is skipped."""
    with open(existing_file(path), encoding="utf-8-sig", newline="\n") as f:
        try:
            for number, line in enumerate(f, 1):
                if not line.strip(" \t\r\n"):  # JSON's whitespace
                    continue
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError) as error:
                    raise GardenError(f"{path} line {number} is not JSON ({error})") from None
                if not isinstance(row, dict):
                    raise GardenError(f"{path} line {number} holds {json.dumps(row)[:40]}, not a JSON object")
                missing = next((field for field in fields if field not in row), None)
                if missing is not None:
                    close = did_you_mean(missing, row)
                    raise GardenError(f"{path} line {number} has no field '{missing}'{close}")
                yield number, row
        except UnicodeDecodeError:
            raise not_utf8(path) from None


def not_utf8(path) -> GardenError:
    """The error for a text file that is not UTF-8, naming its first line that is not."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                return GardenError(
                    f"{path} line {number} is not UTF-8 text ({error.reason} at byte {error.start + 1}); "
                    "save the file as UTF-8"
                )
    return GardenError(f"{path} is not UTF-8 text; save it as UTF-8")


def answer_words(context, answer_start, answer_text):
    """(first, last) index among `context.split()` of the words the answer's characters touch."""
    answer_end = answer_start + len(answer_text) - 1
    first = last = None
    position = 0
    for i, word in enumerate(context.split()):
        begin = context.index(word, position)
        position = begin + len(word)
        if first is None and position > answer_start:
            first = i
        if begin <= answer_end:
            last = i
    if first is None or last is None or last < first:
        raise GardenError(f"answer {answer_text!r} at character {answer_start} is not inside its context")
    return first, last


def read_squad(path):
    """SQuAD v1.1 JSON (data/paragraphs/qas, first answer) or JSONL rows with `question`, `context`,
    `answer_text`, `answer_start` -> Examples with word-span labels [n, 2]."""
    if path.endswith(".jsonl"):
        rows = [
            (r["question"], r["context"], r["answer_start"], r["answer_text"])
            for _, r in json_lines(path, ["question", "context", "answer_text", "answer_start"])
        ]
    else:
        data = json.load(open(existing_file(path), encoding="utf-8"))["data"]
        rows = [
            (qa["question"], p["context"], qa["answers"][0]["answer_start"], qa["answers"][0]["text"])
            for article in data
            for p in article["paragraphs"]
            for qa in p["qas"]
            if qa["answers"]
        ]
    spans = [answer_words(context, start, text) for _, context, start, text in rows]
    features = {
        "question": np.array([r[0] for r in rows], object),
        "context": np.array([" ".join(r[1].split()) for r in rows], object),
    }
    return Examples(features, np.array(spans, np.int64), [])


def read_choices(path, text_column, choices_column, label_column):
    """JSONL rows with a context, a list of choices (the same count in every row) and the right index."""
    rows = [row for _, row in json_lines(path, [text_column, choices_column, label_column])]
    counts = {len(r[choices_column]) for r in rows}
    if len(counts) != 1:
        raise GardenError(f"{path}: every row needs the same number of choices, found {sorted(counts)}")
    features = {
        "text": np.array([r[text_column] for r in rows], object),
        "choices": np.array([r[choices_column] for r in rows], object),
    }
    return Examples(features, np.array([int(r[label_column]) for r in rows], np.int64), [])


def read_lines(path):
    """A text file with one example per non-empty line (for masked LM): labels are all 0."""
    texts = [line.strip() for line in open(existing_file(path), encoding="utf-8") if line.strip()]
    return Examples({"text": np.array(texts, object)}, np.zeros(len(texts), np.int64), [])


def read_tfrecord(path, text_column, label_column, text_pair_column=""):
    """`tf.train.Example` records with bytes features for the texts and a bytes or int64 label, as
    (texts, pairs or None, labels as strings or None without `label_column`)."""
    columns = list(filter(None, (text_column, label_column, text_pair_column)))
    values = {c: [] for c in columns}
    for record in tf.data.TFRecordDataset(str(existing_file(path))).as_numpy_iterator():
        feature = tf.train.Example.FromString(record).features.feature
        for column in columns:
            if column not in feature:
                raise GardenError(f"{path} records have no feature '{column}'{did_you_mean(column, list(feature))}")
            kind = feature[column].WhichOneof("kind")
            value = getattr(feature[column], kind).value[0]
            values[column].append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
    pairs = values[text_pair_column] if text_pair_column else None
    return values[text_column], pairs, values[label_column] if label_column else None
