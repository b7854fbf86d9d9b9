"""Text files too large to hold in memory, streamed line by line (TSV, CSV, JSONL) or record by
record (TFRecord files of `tf.train.Example`s with bytes text features and a bytes or int64 label).

The columns are those of the in-memory readers (`text_column`, `label_column`, `text_pair_column`,
`header`). Label names come from one pass over the label column when the training data is read
(or from the training data, for validation data); a label the training data lacks stops the run
with its file and record named. TSV and CSV lines are split by `tf.io.decode_csv` in the graph;
JSON lines are parsed by Python's `json` in the pipeline (`tf.numpy_function`), TFRecords by
`tf.io.parse_example`. Lines end at \\n (or \\r\\n): TensorFlow's line reader drops every other \\r,
which csv would read as a line end, so a file holding one is refused.
"""

import json
import mmap
import os
import re

import numpy as np
import tensorflow as tf

from garden.data.streams import Stream
from garden.data.task_files import json_lines
from garden.data.text_files import _column, json_text, label_order, table_rows
from garden.errors import GardenError, did_you_mean

TABLES = (".tsv", ".csv")
JSON_LINES = (".jsonl", ".json")
RECORDS = (".tfrecord", ".tfrecords")
_BLOCK = 1 << 24  # bytes of a file searched at a time for a line number


def _header(path, delimiter):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(table_rows(f, path, delimiter), [])


def _check_line_ends(path):
    """Refuses a file with a carriage return that ends no \\r\\n line: TensorFlow's line reader drops
    it, where csv reads a line end (or a quoted \\r) and json refuses it inside a string."""
    if not os.path.getsize(path):
        return
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        found = re.search(rb"\r(?!\n)", data)
        if found:
            at = found.start()
            line = 1 + sum(data[i : min(i + _BLOCK, at)].count(b"\n") for i in range(0, at, _BLOCK))
            raise GardenError(
                f"{path} line {line} holds a carriage return (\\r) that ends no line; streamed files end lines "
                "with \\n or \\r\\n: remove it, or write the file with \\n line ends"
            )


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
        if columns is None:
            for number, row in json_lines(path, [config.label_column]):
                try:
                    found.add(json_text(row[config.label_column], config.label_column))
                except ValueError as error:
                    raise GardenError(f"{path} line {number}: {error}") from None
            continue
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = table_rows(f, path, delimiter)
            if config.header:
                next(rows, None)
            column = columns[1]
            found.update(row[column] for row in rows if len(row) > column)
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
    if kind not in RECORDS:
        for path in files:
            _check_line_ends(path)
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
        lines = tf.data.TextLineDataset(path)
        if columns is None:
            return lines  # json reads a byte order mark
        if config.header:
            return lines.skip(1)
        # a byte order mark would start the first row's first field (only the first: a field may start with U+FEFF)
        first = lines.take(1).map(lambda line: tf.strings.regex_replace(line, "^\ufeff", ""))
        return first.concatenate(lines.skip(1))

    return Stream(files, read, parse, names, config, batch_parse=True)


class BadLine(ValueError, tf.errors.InvalidArgumentError):
    """A JSON line that holds no record. A ValueError, which a numpy_function in the pipeline's graph
    raises as InvalidArgumentError; an InvalidArgumentError itself where the stream re-reads its
    records eagerly to name the bad one (a numpy_function then raises what the function raised)."""

    def __init__(self, message):
        tf.errors.InvalidArgumentError.__init__(self, None, None, message)


def _json_fields(lines, config):
    """(text, label, pair) strings of JSON lines (one or a batch), parsed by Python's json."""
    keys = [config.text_column, config.label_column, config.text_pair_column]

    def parse(data):
        columns = [[] for _ in keys]
        for line in np.asarray(data).reshape(-1):
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as error:
                raise BadLine(f"the line is not JSON ({error})") from None
            if not isinstance(row, dict):
                raise BadLine(f"the line holds {json.dumps(row)[:40]}, not a JSON object")
            missing = [k for k in keys if k and k not in row]
            if missing:
                raise BadLine(f"no field '{missing[0]}'{did_you_mean(missing[0], row)}")
            try:
                for column, key in zip(columns, keys):
                    column.append(json_text(row[key], key) if key else "")
            except ValueError as error:
                raise BadLine(str(error)) from None
        return tuple(np.array(column, dtype=object).reshape(np.shape(data)) for column in columns)

    fields = tf.numpy_function(parse, [lines], [tf.string] * 3, stateful=False)
    return tuple(tf.ensure_shape(field, lines.shape) for field in fields)
