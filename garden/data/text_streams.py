"""Text files too large to hold in memory, streamed line by line (TSV, CSV, JSONL) or record by
record (TFRecord files of `tf.train.Example`s with bytes text features and a bytes or int64 label).

The columns are those of the in-memory readers (`text_column`, `label_column`, `text_pair_column`,
`header`). Label names come from one pass over the label column when the training data is read
(or from the training data, for validation data); a label the training data lacks stops the run
with its file and record named. TSV and CSV lines are split by `tf.io.decode_csv` in the graph;
JSON lines are parsed by Python's `json` in the pipeline (`tf.numpy_function`), TFRecords by
`tf.io.parse_example`.
"""

import csv
import json
import os

import numpy as np
import tensorflow as tf

from garden.data.streams import Stream
from garden.data.text_files import _column, csv_quoting, label_order
from garden.errors import GardenError, did_you_mean

TABLES = (".tsv", ".csv")
JSON_LINES = (".jsonl", ".json")
RECORDS = (".tfrecord", ".tfrecords")


def _header(path, delimiter):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f, delimiter=delimiter, quoting=csv_quoting(delimiter)), [])


def _table_columns(files, config, delimiter):
    """(column indices of text, label and pair or None, fields per row), from the first file's header."""
    head = _header(files[0], delimiter) if config.header else None
    text, label = (_column(head, c, files[0]) for c in (config.text_column, config.label_column))
    pair = _column(head, config.text_pair_column, files[0]) if config.text_pair_column else None
    width = len(head) if head else max(text, label, pair or 0) + 1
    return text, label, pair, width


def _record_spec(files, config):
    """parse_example's spec: bytes texts, and the label as the first record stores it (bytes or int64)."""
    first = next(iter(tf.data.TFRecordDataset(files[0]).take(1)), None)
    feature = tf.train.Example.FromString(first.numpy()).features.feature if first is not None else {}
    for key in filter(None, (config.text_column, config.label_column, config.text_pair_column)):
        if key not in feature:
            raise GardenError(f"{files[0]} records have no feature '{key}'{did_you_mean(key, list(feature))}")
    label_type = tf.int64 if feature[config.label_column].WhichOneof("kind") == "int64_list" else tf.string
    spec = {key: tf.io.FixedLenFeature([], tf.string) for key in (config.text_column, config.text_pair_column) if key}
    return {**spec, config.label_column: tf.io.FixedLenFeature([], label_type)}


def _labels_in(files, config, delimiter, columns, record_spec):
    """Every label of the files, in one streaming pass that keeps only the label column."""
    if record_spec is not None:
        spec = {config.label_column: record_spec[config.label_column]}
        records = tf.data.TFRecordDataset(files).batch(1024).map(lambda r: tf.io.parse_example(r, spec))
        labels = (tf.strings.as_string(b[config.label_column]) for b in records)
        return label_order({label.decode() for batch in labels for label in batch.numpy()})
    found = set()
    for path in files:
        with open(path, newline="", encoding="utf-8-sig") as f:
            if columns is not None:
                rows = csv.reader(f, delimiter=delimiter, quoting=csv_quoting(delimiter))
                if config.header:
                    next(rows, None)
                column = columns[1]
                found.update(row[column] for row in rows if len(row) > column)
            else:
                found.update(str(json.loads(line)[config.label_column]) for line in f if line.strip())
    return label_order(found)


def text_stream(files: list[str], config, label_names=None) -> Stream:
    """A Stream of {"text"[, "text_pair"]} features and label ids over the lines of `files`."""
    kinds = {os.path.splitext(f)[1] for f in files}
    if len(kinds) > 1 or not kinds <= set(TABLES + JSON_LINES + RECORDS):
        raise GardenError(
            f"streamed text files must all be .tsv, .csv, .jsonl or .tfrecord (got {', '.join(sorted(kinds))}); "
            "convert the others, or keep the set under in_memory_limit"
        )
    (kind,) = kinds
    delimiter = "\t" if kind == ".tsv" else ","
    columns = _table_columns(files, config, delimiter) if kind in TABLES else None
    record_spec = _record_spec(files, config) if kind in RECORDS else None
    names = list(label_names) if label_names else _labels_in(files, config, delimiter, columns, record_spec)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(names), tf.range(len(names), dtype=tf.int64)), -1
    )
    pairs = bool(config.text_pair_column)

    def fields(line):
        if record_spec is not None:
            example = (
                tf.io.parse_example(line, record_spec)
                if line.shape.rank
                else tf.io.parse_single_example(line, record_spec)
            )
            label = (
                tf.strings.as_string(example[config.label_column])
                if example[config.label_column].dtype == tf.int64
                else example[config.label_column]
            )
            pair = example[config.text_pair_column] if pairs else tf.zeros_like(line)
            return example[config.text_column], label, pair
        if columns is None:
            return _json_fields(line, config)
        text, label, pair, width = columns
        if not config.header:  # a byte order mark would start the first row's first field
            line = tf.strings.regex_replace(line, "^\ufeff", "")
        values = tf.io.decode_csv(line, [""] * width, field_delim=delimiter, use_quote_delim=delimiter == ",")
        return values[text], values[label], values[pair] if pair is not None else tf.zeros_like(line)

    def parse(file_id, line):
        text, label, pair = fields(line)
        label_id = table.lookup(label)
        check = tf.debugging.assert_non_negative(
            label_id, message="a label is not among the training data's labels; check the label column"
        )
        with tf.control_dependencies([check]):
            features = {"text": tf.identity(text)}
        if pairs:
            features["text_pair"] = pair
        return features, label_id

    def read(path):  # a blank line is a bad record here (the in-memory readers skip it): a filter costs 10x
        if record_spec is not None:
            return tf.data.TFRecordDataset(path)
        return tf.data.TextLineDataset(path).skip(1 if columns is not None and config.header else 0)

    return Stream(files, read, parse, names, config, batch_parse=True)


def _json_fields(lines, config):
    """(text, label, pair) strings of JSON lines (one or a batch), parsed by Python's json."""
    keys = [config.text_column, config.label_column, config.text_pair_column]

    def parse(data):
        columns = [[] for _ in keys]
        for line in np.asarray(data).reshape(-1):
            row = json.loads(line)
            missing = [k for k in keys if k and k not in row]
            if missing:
                raise ValueError(f"no field '{missing[0]}'{did_you_mean(missing[0], row)}")
            for column, key in zip(columns, keys):
                column.append(str(row[key]) if key else "")
        return tuple(np.array(column, dtype=object).reshape(np.shape(data)) for column in columns)

    fields = tf.numpy_function(parse, [lines], [tf.string] * 3, stateful=False)
    return tuple(tf.ensure_shape(field, lines.shape) for field in fields)
