"""Text classification data from files: GLUE-format TSV, CSV, JSONL, TFRecord, and Orange's `.tab` corpora.

Each reader returns texts (and optional text pairs) with string labels; `to_examples`
maps labels to ids with the given label names, or with the labels it finds in `label_order`.
Files may start with a UTF-8 byte order mark (Excel writes one). A TSV has no quoting (GLUE's hold
quotes as text), so a tab cannot be inside a field; a CSV's quotes may hold commas and newlines.
Tables read as Python's csv reads them, JSON lines as Python's json reads each line; a file that
they cannot read, or whose values are no text, is refused in one line naming the file and line.
"""

import csv
import json
import os
import re

import numpy as np

from garden.data.catalog import existing_file
from garden.data.examples import Examples
from garden.data.task_files import json_lines, not_utf8, read_tfrecord
from garden.errors import GardenError, did_you_mean

_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def to_examples(texts, labels, label_names=None, pairs=None):
    if any(isinstance(label, list) for label in labels):
        raise GardenError("the label column holds lists: multi-label data; read it with dataset multi_label_text_file")
    names, index = _label_index(set(labels), label_names)
    return Examples(text_features(texts, pairs), np.array([index[label] for label in labels], np.int64), names)


def label_order(found) -> list[str]:
    """Label names in id order: by number when every one is a whole number ('2' before '10'), else sorted."""
    found = sorted(found)
    if found and all(_WHOLE_NUMBER.fullmatch(name) for name in found):
        return sorted(found, key=int)
    return found


def _label_index(found, label_names=None):
    """(label names: `label_names`, else the `found` ones in `label_order`; name -> id), refusing found
    names not among them."""
    names = list(label_names) if label_names else label_order(found)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(found) - set(index))
    if unknown:
        raise GardenError(
            f"labels {unknown[:5]} are not among the training labels {names[:10]}; check the label column"
        )
    return names, index


def to_multi_hot_examples(texts, labels, label_names=None, pairs=None, separator=","):
    """Examples with multi-hot labels [examples, classes]: each label a list of names (JSON lines) or
    names joined by `separator`; an empty one holds no class."""
    lists = [
        [str(name).strip() for name in (label if isinstance(label, list) else str(label).split(separator))]
        for label in labels
    ]
    lists = [[name for name in names if name] for names in lists]
    names, index = _label_index({name for found in lists for name in found}, label_names)
    multi_hot = np.zeros((len(lists), len(names)), np.float32)
    for row, found in enumerate(lists):
        multi_hot[row, [index[name] for name in found]] = 1.0
    return Examples(text_features(texts, pairs), multi_hot, names)


def text_features(texts, pairs=None):
    features = {"text": np.array(texts, dtype=object)}
    if pairs is not None:
        features["text_pair"] = np.array(pairs, dtype=object)
    return features


def _column(header, column, path):
    """The index of `column` (a name in `header`, or a number when the file has no header)."""
    if header is None:
        if not str(column).isdigit():
            raise GardenError(f"{path} has no header, so columns are numbers; got '{column}'")
        return int(column)
    if column not in header:
        raise GardenError(f"{path} has no column '{column}'{did_you_mean(column, header)}")
    return header.index(column)


def csv_quoting(delimiter):
    """GLUE's TSV files hold quotes as text; CSV files quote fields that need it."""
    return csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL


def table_rows(file, path, delimiter):
    """The rows of `file` (opened with newline="") as csv reads them; text that is not UTF-8, or that
    csv refuses, is one GardenError naming `path` and the line."""
    reader = csv.reader(file, delimiter=delimiter, quoting=csv_quoting(delimiter))
    try:
        yield from reader
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except csv.Error as error:  # a field over csv's size limit: most often a quote that is never closed
        raise GardenError(f"{path} line {reader.line_num}: {error}; check the quotes before it") from None


def read_table(path, text_column, label_column, text_pair_column="", header=True):
    """Rows of a TSV (`.tsv`) or CSV file as (texts, pairs or None, labels or None without `label_column`)."""
    existing_file(path)
    delimiter = "\t" if path.endswith(".tsv") else ","
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [row for row in table_rows(f, path, delimiter) if row]
    if header and not rows:
        raise GardenError(f"{path} is empty: a table starts with its header row")
    head = rows.pop(0) if header else None
    fields = len(head) if head else len(rows[0]) if rows else 0
    long = next((i for i, row in enumerate(rows) if len(row) > fields), None)
    if long is not None:
        fix = (
            "a TSV field cannot hold a tab (TSV has no quoting): remove it, or write the file as CSV"
            if delimiter == "\t"
            else "quote a field that holds a comma"
        )
        raise GardenError(
            f"{path} row {long + 1 + bool(header)} has {len(rows[long])} fields, "
            f"{'the header' if head else 'the first row'} {fields}; {fix}"
        )
    text, label, pair = (_column(head, c, path) if c else None for c in (text_column, label_column, text_pair_column))
    width = max(c for c in (text, label, pair) if c is not None) + 1
    short = next((i for i, row in enumerate(rows) if len(row) < width), None)
    if short is not None:
        raise GardenError(
            f"{path} row {short + 1 + bool(header)} has {len(rows[short])} fields, expected at least {width}"
        )
    pairs = [row[pair] for row in rows] if pair is not None else None
    return [row[text] for row in rows], pairs, [row[label] for row in rows] if label is not None else None


def json_text(value, key):
    """A JSON text or label value as text: a string as it is, a number as Python writes it; ValueError
    for null, true/false, lists and objects (never the text 'None', 'True' or a Python repr)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"field '{key}' holds {json.dumps(value)[:40]}, not text or a number")


def read_jsonl(path, text_column, label_column, text_pair_column=""):
    """Objects of a JSON-lines file as (texts, pairs or None, labels or None without `label_column`);
    a label may be a list of names (multi-label data)."""
    texts, pairs, labels = [], [], []
    for number, row in json_lines(path, list(filter(None, (text_column, label_column, text_pair_column)))):
        try:
            texts.append(json_text(row[text_column], text_column))
            if text_pair_column:
                pairs.append(json_text(row[text_pair_column], text_pair_column))
            if label_column:
                label = row[label_column]
                labels.append(
                    [json_text(v, label_column) for v in label]
                    if isinstance(label, list)
                    else json_text(label, label_column)
                )
        except ValueError as error:
            raise GardenError(f"{path} line {number}: {error}") from None
    return texts, pairs if text_pair_column else None, labels if label_column else None


def read_orange_tab(path):
    """Orange's `.tab` corpus (three header rows, then `label<TAB>text`) as (texts, labels)."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f):
            if number < 3 or not line.strip():
                continue
            label, _, text = line.rstrip("\n").partition("\t")
            labels.append(label)
            texts.append(text)
    return texts, labels


def read_text_file(path, text_column, label_column, text_pair_column="", header=True):
    kind = os.path.splitext(path)[1]
    if kind in (".tsv", ".csv"):
        return read_table(path, text_column, label_column, text_pair_column, header)
    if kind in (".jsonl", ".json"):
        return read_jsonl(path, text_column, label_column, text_pair_column)
    if kind in (".tfrecord", ".tfrecords"):
        return read_tfrecord(path, text_column, label_column, text_pair_column)
    raise GardenError(f"cannot read {path}: use a .tsv, .csv, .jsonl or .tfrecord file")
