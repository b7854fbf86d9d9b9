"""Fuzzing (Hypothesis): what users hand Garden, against an independent reader of the same input.

- Text tables and JSON lines, in memory and streamed, against Python's csv and json on the same bytes.
- REST request bodies, against the arrays they were made from and a tiny SavedModel called directly.
- `--set` overrides, against the value YAML reads.

Each is read as the reference reads it, or refused in one line (GardenError; HTTP 400 {"error": ...}),
never another exception or a 5xx. A few examples each, the same on every run; GARDEN_CHAOS_POINTS=N
(as `make chaos` sets) tries N times as many. Each fault they found has its own test beside them.
"""

import asyncio
import base64
import csv
import io
import json
import math
import os
import re
import tempfile
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
import yaml
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from garden.config import DataConfig
from garden.data import text_datasets
from garden.data.streams import bad_records_named, raw_examples
from garden.data.text_files import label_order, read_table
from garden.errors import GardenError
from garden.export.requests import Limits, RequestError
from garden.export.rest_api import parse, parse_examples
from garden.export.serve import build_app
from garden.resolve import experiment_config
from garden.yaml_files import to_yaml

POINTS = int(os.environ.get("GARDEN_CHAOS_POINTS", "1"))
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "garden-hypothesis"))  # its caches: none in the repo


def fuzz(examples):
    """`examples` tries (times GARDEN_CHAOS_POINTS), derandomized, with no example database written."""
    return settings(
        max_examples=examples * POINTS,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def one_line(error) -> str:
    message = str(error)
    assert len(message.strip().splitlines()) == 1, repr(message)
    return message


# --- text tables and JSON lines --------------------------------------------------------------------------

BOM = "\ufeff".encode()
FIELDS = st.one_of(
    st.text(st.sampled_from(list("ab ,\t\"'\n\r\\é😀\ufeff\u2028\x00-1")), max_size=6),
    st.text(max_size=4),
)
LABELS = st.one_of(
    st.integers(-12, 12).map(str), st.sampled_from(["pos", "neg", "", "01", " 2", "+3", "--1", "²", "1.0"]), FIELDS
)
RAW_CHANGES = [b"\xff", b"\xc3", b"\r", b"\x00", b"\n", b'"', b"\t", b",", BOM]


def expected_ids(labels):
    """Label names in id order, by hand: ASCII whole numbers by value, anything else as sorted text."""
    names = sorted(set(labels))
    return sorted(names, key=int) if all(re.fullmatch("-?[0-9]+", n) for n in names) else names


def read_as_garden(path, streamed, **columns):
    """(texts, label names of each example, label names in id order) as Garden reads `path`,
    in memory or streamed (as `garden train` streams it: a bad record named in one line)."""
    config = DataConfig(
        dataset="text_file", input_path=str(path), in_memory_limit=0 if streamed else 1 << 30, **columns
    )
    data = text_datasets.text_file(config)
    if streamed:
        with bad_records_named(data):
            read = list(raw_examples(data))
        texts, ids = [f["text"].decode("utf-8") for f, _ in read], [label for _, label in read]
    else:
        texts, ids = list(data.features["text"]), list(data.labels)
    return texts, [data.label_names[i] for i in ids], data.label_names


@st.composite
def tables(draw):
    """(kind, header, bytes) of a TSV or CSV file written as csv writes one, with a raw change at times."""
    kind, header = draw(st.sampled_from([".csv", ".tsv"])), draw(st.booleans())
    rows = ([("sentence", "label")] if header else []) + draw(
        st.lists(st.tuples(FIELDS, LABELS), min_size=1, max_size=5)
    )
    end = draw(st.sampled_from(["\n", "\r\n"]))
    if kind == ".csv":
        out = io.StringIO()
        quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
        csv.writer(out, quoting=quoting, lineterminator=end).writerows(rows)
        text = out.getvalue()
    else:  # TSV as GLUE writes it: fields joined by tabs, no quoting
        text = "".join("\t".join(row) + end for row in rows)
    data = (BOM if draw(st.booleans()) else b"") + text.encode()
    changed = draw(st.integers(0, 3)) == 0
    if changed:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from(RAW_CHANGES)) + data[at:]
    return kind, header, data, changed


def table_reference(kind, header, data):
    """(texts, labels) as Python's csv reads `data` under Garden's rules for columns (a row with more
    fields than the header, or too few for the columns, is refused), or None where it is refused."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
        tsv = kind == ".tsv"
        reader = csv.reader(
            io.StringIO(text, newline=""),
            delimiter="\t" if tsv else ",",
            quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
        )
        rows = [row for row in reader if row]
    except (UnicodeDecodeError, csv.Error):
        return None
    if header:
        if not rows or "sentence" not in rows[0] or "label" not in rows[0]:
            return None
        head = rows.pop(0)
        text_at, label_at, fields = head.index("sentence"), head.index("label"), len(head)
    else:
        text_at, label_at, fields = 0, 1, len(rows[0]) if rows else 0
    if any(len(row) > fields or len(row) <= max(text_at, label_at) for row in rows):
        return None
    return [row[text_at] for row in rows], [row[label_at] for row in rows]


def streams_line_by_line(data, kind):
    """Whether every row of the file is one line, none of them blank, ending in \\n or \\r\\n: what a
    streamed reader reads (it splits lines at \\n, and takes a blank line for a bad record)."""
    lines = data.removeprefix(BOM).split(b"\n")[:-1]
    return (
        data.endswith(b"\n")
        and all(line.removesuffix(b"\r") and b"\r" not in line.removesuffix(b"\r") for line in lines)
        and (kind == ".tsv" or all(line.count(b'"') % 2 == 0 for line in lines))
    )


@fuzz(40)
@given(table=tables(), streamed=st.booleans())
def test_text_tables_read_as_pythons_csv_reads_them_or_are_refused_in_one_line(table, streamed, tmp_path_factory):
    """Quoted fields with tabs, commas, quotes and newlines, unicode, byte order marks, empty fields,
    number labels, raw bytes that are no UTF-8 and stray carriage returns: in memory Garden reads
    what csv reads wherever Garden's column rules take the rows; streamed, it reads the same or
    refuses, and it reads every file whose rows are lines."""
    kind, header, data, changed = table
    path = tmp_path_factory.getbasetemp() / f"fuzz{kind}"
    path.write_bytes(data)
    expected = table_reference(kind, header, data)
    columns = {} if header else {"header": False, "text_column": "0", "label_column": "1"}
    try:
        texts, labels, names = read_as_garden(path, streamed, **columns)
    except GardenError as error:
        one_line(error)
        may_refuse = expected is None or (streamed and (changed or not streams_line_by_line(data, kind)))
        assert may_refuse, f"refused a table csv reads: {error}"
        return
    assert expected is not None, "read a table csv cannot read or Garden's column rules refuse"
    assert (texts, labels) == expected
    assert names == expected_ids(expected[1])


@st.composite
def json_lines(draw):
    """(bytes of a JSON-lines file, whether a raw change was made) with text and label values of
    every JSON kind, fields missing at times, blank lines, \\r\\n line ends and byte order marks."""
    value = st.one_of(
        FIELDS, LABELS, st.integers(-(2**70), 2**70), st.floats(), st.none(), st.booleans(),
        st.lists(st.sampled_from(["a", "b", 1]), max_size=2), st.dictionaries(st.sampled_from(["x"]), st.integers()),
    )  # fmt: skip
    row = st.fixed_dictionaries({}, optional={"sentence": value, "label": value, "other": value})
    rows = draw(st.lists(st.one_of(row, row, row, value), min_size=1, max_size=4))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [json.dumps(r, ensure_ascii=draw(st.booleans())) for r in rows]
    if draw(st.integers(0, 4)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", " ", "\t"])))
    data = (BOM if draw(st.booleans()) else b"") + "".join(line + end for line in lines).encode()
    changed = draw(st.integers(0, 4)) == 0
    if changed:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from(RAW_CHANGES + [b"{", b"]"])) + data[at:]
    return data, changed


def jsonl_reference(data):
    """(texts, labels) as Python's json reads each line of `data` (at \\n), texts and labels strings or
    numbers (read as Python writes them), or None where a line is not such an object."""
    texts, labels = [], []
    try:
        lines = data.decode("utf-8").removeprefix("\ufeff").split("\n")
    except UnicodeDecodeError:
        return None
    for line in lines:
        if not line.strip(" \t\r\n"):
            continue
        try:
            row = json.loads(line)
        except ValueError:
            return None
        if not isinstance(row, dict) or "sentence" not in row or "label" not in row:
            return None
        for value, out in ((row["sentence"], texts), (row["label"], labels)):
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                return None
            out.append(value if isinstance(value, str) else str(value))
    return texts, labels


@fuzz(30)
@given(case=json_lines(), streamed=st.booleans())
def test_json_lines_read_as_pythons_json_reads_them_or_are_refused_in_one_line(case, streamed, tmp_path_factory):
    """Null, true, lists, objects and missing fields are refused (they were read as 'None', 'True' or a
    Python repr, or raised KeyError and TypeError); blank lines are skipped in memory and may be
    refused streamed (a streamed file's blank line is a bad record)."""
    data, changed = case
    path = tmp_path_factory.getbasetemp() / "fuzz.jsonl"
    path.write_bytes(data)
    expected = jsonl_reference(data)
    try:
        texts, labels, names = read_as_garden(path, streamed)
    except GardenError as error:
        one_line(error)
        blank = any(not line.strip(b" \t\r") for line in data.removeprefix(BOM).split(b"\n")[:-1])
        assert expected is None or (streamed and (changed or blank or b"\r" in data.replace(b"\r\n", b""))), error
        return
    assert expected is not None, "read JSON lines that Python's json does not read as text objects"
    assert (texts, labels) == expected
    assert names == expected_ids(expected[1])


def test_labels_with_digits_that_are_no_ascii_whole_number_sort_as_text():
    """The fault: '--1' and '²' passed str.isdigit() after lstrip('-'), and int() raised ValueError."""
    assert label_order({"--1", "2"}) == ["--1", "2"]
    assert label_order({"²", "10", "2"}) == ["10", "2", "²"]
    assert label_order({"-3", "10", "2"}) == ["-3", "2", "10"]


def test_a_table_that_is_no_utf8_or_that_csv_refuses_is_one_line(tmp_path):
    """The faults: UnicodeDecodeError and csv.Error (a field past csv's size limit, as an unclosed
    quote makes) came out of the reader, in memory and from a streamed file's label pass."""
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"sentence,label\nfine,1\n\xff\xfe,2\n")
    for streamed in (False, True):
        with pytest.raises(GardenError, match=r"bad.csv line 3 is not UTF-8 text \(invalid start byte at byte 1\)"):
            read_as_garden(bad, streamed)
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('sentence,label\n"never closed,1\n' + "word " * 30000 + ",2\n")
    with pytest.raises(GardenError, match=r"unclosed.csv line \d+: field larger than field limit .*check the quotes"):
        read_table(str(unclosed), "sentence", "label")


@pytest.mark.parametrize(
    "lines, message",
    [
        ('{"sentence": "a", "label": 1}\n"sentence label"\n', r"line 2 holds \"sentence label\", not a JSON object"),
        ('{"sentence": "a", "label": 1}\n{"sentence": "b"}\n', r"line 2 has no field 'label'"),
        ('{"sentence": "a", "label": 1}\n{bad\n', r"line 2 is not JSON \(Expecting property name"),
        ('{"sentence": null, "label": 1}\n', r"(line 1|record 0): field 'sentence' holds null, not text"),
        ('{"sentence": "a", "label": true}\n', r"line 1: field 'label' holds true, not text or a number"),
        ('{"sentence": "a", "label": {"x": 1}}\n', r"line 1: field 'label' holds \{\"x\": 1\}, not text"),
    ],
    ids=["not-an-object", "missing-field", "not-json", "null-text", "true-label", "object-label"],
)
def test_json_lines_that_hold_no_text_object_are_refused_in_one_line(lines, message, tmp_path):
    """The faults: a JSON string line passed the field check as a substring and raised TypeError; a
    field missing past the first line raised KeyError; malformed JSON raised JSONDecodeError; null,
    true and objects were read as the texts and labels 'None', 'True' and "{'x': 1}"."""
    path = tmp_path / "data.jsonl"
    path.write_text(lines)
    for streamed in (False, True):
        with pytest.raises(GardenError, match=message):
            read_as_garden(path, streamed)


def test_a_streamed_file_with_a_carriage_return_that_ends_no_line_is_refused(tmp_path):
    """The fault: TensorFlow's line reader drops every \\r, so a file with classic Mac line ends
    streamed as one line (its header, skipped: no examples) and a quoted \\r vanished from its field;
    csv reads the \\r as a line end, or keeps it. In memory the file reads as csv reads it."""
    mac = tmp_path / "mac.tsv"
    mac.write_bytes(b"sentence\tlabel\rhello\t1\rbye\t0\r")
    assert read_as_garden(mac, streamed=False) == (["hello", "bye"], ["1", "0"], ["0", "1"])
    with pytest.raises(GardenError, match=r"mac.tsv line 1 holds a carriage return \(\\r\) that ends no line"):
        read_as_garden(mac, streamed=True)
    quoted = tmp_path / "quoted.csv"
    quoted.write_bytes(b'sentence,label\r\n"one\rtwo",1\r\n')
    assert read_as_garden(quoted, streamed=False)[0] == ["one\rtwo"]
    with pytest.raises(GardenError, match=r"quoted.csv line 2 holds a carriage return"):
        read_as_garden(quoted, streamed=True)


def test_a_streamed_table_keeps_a_byte_order_mark_that_starts_a_later_row(tmp_path):
    """The fault: a streamed table without a header lost U+FEFF at the start of every line, where only
    the file's first (its byte order mark) is no text; csv keeps the others."""
    path = tmp_path / "rows.tsv"
    path.write_text("\ufeffa\t1\n\ufeffb\t2\n")
    for streamed in (False, True):
        texts = read_as_garden(path, streamed, header=False, text_column="0", label_column="1")[0]
        assert texts == ["a", "\ufeffb"]


def test_a_column_name_with_a_line_break_is_named_escaped(tmp_path):
    """The fault: "did you mean" named a header's or JSON key's column as it is, and a line break in it
    (U+2028 here) broke the message in two."""
    table, lines = tmp_path / "data.csv", tmp_path / "data.jsonl"
    table.write_text("\u2028sentence,label\nfine,1\n")
    lines.write_text('{"\u2028sentence": "fine", "label": 1}\n')
    for path, missing in ((table, "column"), (lines, "field")):
        for streamed in (False, True):
            with pytest.raises(GardenError) as refused:
                read_as_garden(path, streamed)
            assert f"no {missing} 'sentence'; did you mean '\\u2028sentence'?" in one_line(refused.value)


# --- REST request bodies --------------------------------------------------------------------------------

SIGNATURES = {  # name -> input -> (dtype, shape after the batch axis): the tiny served model's
    "serving_default": {"x": (tf.float32, (3,)), "ids": (tf.int32, (2,))},
    "single": {"x": (tf.float32, (3,))},
    "text": {"text": (tf.string, ())},
}


class Tiny(tf.Module):
    """A model with a float and an int input, a one-input signature and a string one."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable([[0.5], [-1.25], [2.0]])

    def spec(self, signature):
        return [tf.TensorSpec([None, *shape], dtype, name=n) for n, (dtype, shape) in SIGNATURES[signature].items()]

    def signatures(self):
        both = tf.function(
            lambda x, ids: {
                "score": tf.squeeze(x @ self.w, 1) + tf.cast(tf.reduce_sum(ids, 1), tf.float32),
                "ids": ids * 3,
            },
            input_signature=self.spec("serving_default"),
        )
        single = tf.function(lambda x: {"total": tf.reduce_sum(x, 1)}, input_signature=self.spec("single"))
        text = tf.function(
            lambda text: {"length": tf.strings.length(text), "upper": tf.strings.upper(text)},
            input_signature=self.spec("text"),
        )
        return {"serving_default": both, "single": single, "text": text}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """The tiny model's SavedModel folder and its signatures, loaded back from disk."""
    folder = tmp_path_factory.mktemp("tiny") / "1"
    model = Tiny()
    tf.saved_model.save(model, str(folder), signatures=model.signatures())
    return folder, tf.saved_model.load(str(folder)).signatures


@pytest.fixture(scope="module")
def served(tiny_model):
    """The URL of `garden serve`'s app serving the tiny model as 'tiny', on a thread of this process."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app({"tiny": str(tiny_model[0])}, Limits(max_instances=64)))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/v1/models/tiny"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=30)


def good_value(dtype):
    """JSON values an input of `dtype` takes, with the value it reads them as."""
    if dtype == tf.string:
        text = st.text(max_size=5).map(lambda t: (t, t.encode()))
        return st.one_of(text, st.binary(max_size=5).map(lambda b: ({"b64": base64.b64encode(b).decode()}, b)))
    if dtype == tf.int32:
        return st.integers(-(2**31), 2**31 - 1).map(lambda i: (i, i))
    # up to 1e30: the tiny model's sums stay finite (see test_an_infinite_output_is_written_as_tf_serving_writes_it)
    numbers = st.one_of(st.floats(-1e30, 1e30), st.integers(-(2**64), 2**64), st.sampled_from([0, 1, -0.0]))
    return numbers.map(lambda v: (v, np.float32(float(v))))


DEEP = json.loads("[" * 80 + "0" + "]" * 80)  # past numpy's 64 dimensions
BAD_VALUES = {  # values an input of the dtype refuses
    tf.float32: [True, False, None, "1", [1.0], {"b64": "AA=="}, 10**40, -1e39, math.nan, math.inf],
    tf.int32: [True, None, 1.5, 2.0, "3", 2**31, -(2**31) - 1, 2**63, [1], {"x": 1}],
    tf.string: [1, 1.5, True, None, ["a"], {"b64": "!!"}, {"b64": "é"}, {"b64": 5}, "\ud800", {"x": "a"}],
}


def nested(flat, shape):
    """`flat` values as nested lists of `shape`."""
    for size in reversed(shape[1:]):
        flat = [flat[i : i + size] for i in range(0, len(flat), size)]
    return flat


@st.composite
def predict_bodies(draw):
    """(body bytes, signature name, the arrays a well-formed body holds or None for a bad one)."""
    name = draw(st.sampled_from(sorted(SIGNATURES)))
    inputs, count = SIGNATURES[name], draw(st.integers(1, 3))
    arrays, flat = {}, {}
    for key, (dtype, shape) in inputs.items():
        size = count * math.prod(shape)
        pairs = draw(st.lists(good_value(dtype), min_size=size, max_size=size))
        flat[key] = [value for value, _ in pairs]
        read = np.array([r for _, r in pairs], dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
        arrays[key] = read.reshape(count, *shape)
    fault = draw(st.sampled_from(["value", "none", "value", "none", "shape", "none", "form", "bytes"]))
    key = draw(st.sampled_from(sorted(inputs)))
    if fault == "value":  # one value no input of its dtype takes
        flat[key][draw(st.integers(0, len(flat[key]) - 1))] = draw(st.sampled_from(BAD_VALUES[inputs[key][0]]))
    columns = {k: nested(flat[k], arrays[k].shape) for k in inputs}
    if fault == "shape":  # one instance of another shape, or nested past numpy's 64 dimensions
        size = math.prod(inputs[key][1])
        wrong = [[], [0] * (size + 1), [[0] * size], DEEP] if size > 1 else [[], ["a"], [DEEP]]
        columns[key][draw(st.integers(0, count - 1))] = draw(st.sampled_from(wrong))
    if draw(st.booleans()):  # row format: objects, or for one input its values alone
        bare = len(inputs) == 1 and draw(st.booleans())
        request = {"instances": columns[key] if bare else [{k: columns[k][i] for k in inputs} for i in range(count)]}
    else:  # columnar: the inputs by name, or one input's values alone
        bare = len(inputs) == 1 and draw(st.booleans())
        request = {"inputs": columns[key] if bare else columns}
    if name != "serving_default" or draw(st.booleans()):
        request["signature_name"] = name
    if draw(st.booleans()):
        request["stream"] = False
    if fault == "form":
        request = draw(
            st.sampled_from(
                [
                    {**request, "signature_name": draw(st.sampled_from([1, ["text"], {"a": 1}, True]))},
                    {**request, "stream": "yes"},
                    {**request, "instances": [], "inputs": []},
                    {k: v for k, v in request.items() if k not in ("instances", "inputs")},
                    [request],
                    "instances",
                    None,
                ]
            )
        )
    body = json.dumps(request, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if fault == "bytes":
        body = draw(st.sampled_from([body[:-1], b"\xff" + body, body.replace(b'"', b"'", 1), b"[" * 5000, b""]))
    return body, name, arrays if fault == "none" else None


def specs_of(name):
    if name not in SIGNATURES:
        raise RequestError(f"no signature '{name}'")
    return {n: tf.TensorSpec([None, *shape], dtype, name=n) for n, (dtype, shape) in SIGNATURES[name].items()}


@fuzz(150)
@given(case=predict_bodies())
def test_predict_bodies_parse_to_the_arrays_they_hold_or_are_refused_in_one_line(case):
    """Row and columnar forms, b64 strings, huge, infinite and boolean numbers, nulls, nesting and
    bytes that are no JSON: a RequestError in one line, or exactly the arrays the body was made from."""
    body, name, arrays = case
    try:
        signature, parsed, _, stream = parse(body, specs_of, 64)
    except RequestError as error:
        one_line(error)
        assert arrays is None, f"refused a well-formed body: {error}"
        return
    assert arrays is not None, f"took a bad body: {body[:300]!r}"
    assert signature == name and not stream and sorted(parsed) == sorted(arrays)
    for key, expected in arrays.items():
        assert parsed[key].dtype == expected.dtype and parsed[key].shape == expected.shape
        assert parsed[key].tolist() == expected.tolist()


def post(url, body):
    """(status, JSON reply) of a POST of `body` bytes."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def jsonable(array):
    return [x.decode("utf-8", "replace") for x in array] if array.dtype == object else array.tolist()


@fuzz(30)
@given(case=predict_bodies())
def test_the_served_model_answers_as_the_saved_model_or_400_in_one_line(case, served, tiny_model):
    """Through `garden serve`'s app: never a 5xx; a well-formed body's answer is the SavedModel's own."""
    body, name, arrays = case
    status, reply = post(served + ":predict", body)
    if arrays is None:
        assert status == 400, (status, reply)
        one_line(reply["error"])
        return
    assert status == 200, reply
    direct = tiny_model[1][name](**{k: tf.constant(v) for k, v in arrays.items()})
    expected = {k: jsonable(v.numpy()) for k, v in direct.items()}
    predictions = reply.get("predictions", reply.get("outputs"))
    if len(expected) == 1:
        assert predictions == next(iter(expected.values()))
    elif "outputs" in reply:
        assert predictions == expected
    else:
        assert predictions == [{k: v[i] for k, v in expected.items()} for i in range(len(predictions))]


def test_an_infinite_output_is_written_as_tf_serving_writes_it(served):
    """Finite inputs whose sum is past float32's range: the model answers inf, the reply said null
    (orjson writes inf and NaN so); TF Serving writes Infinity, -Infinity and NaN."""
    status, reply = post(served + ":predict", b'{"signature_name": "single", "instances": [[3e38, 3e38, -1]]}')
    assert status == 200 and reply["predictions"] == [math.inf]


FEATURES = st.one_of(
    st.text(max_size=3), st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.none(),
    st.sampled_from(["\ud800", {"b64": "é"}, {"b64": "AA=="}, [[[[1]]]] * 3, [1, "a"], 10**400]),
)  # fmt: skip


@fuzz(100)
@given(
    examples=st.lists(
        st.dictionaries(st.sampled_from(["x", "y"]), st.one_of(FEATURES, st.lists(FEATURES, max_size=3))), max_size=3
    ),
    context=st.one_of(st.none(), st.dictionaries(st.sampled_from(["x", "c"]), FEATURES, max_size=2), FEATURES),
    signature=st.one_of(st.none(), st.text(max_size=3), st.integers(), st.lists(st.text(max_size=2), max_size=1)),
    dtypes=st.dictionaries(st.sampled_from(["x", "y", "c"]), st.sampled_from(["string", "float32", "int64"])),
)
def test_classify_bodies_become_examples_or_are_refused_in_one_line(examples, context, signature, dtypes):
    """TF Serving's {"examples": [...], "context": {...}} with features of every JSON kind; a feature's
    values in a tf.train.Example are the JSON's, as its dtype holds them."""
    request = {"examples": examples, "context": context, "signature_name": signature}
    body = json.dumps(request).encode("utf-8", "surrogatepass")
    try:
        name, serialized = parse_examples(body, dtypes)
    except RequestError as error:
        one_line(error)
        return
    assert isinstance(name, str) and len(serialized) == len(examples)
    for row, record in zip(examples, serialized):
        feature = tf.train.Example.FromString(record).features.feature
        for key, value in {**(context or {}), **row}.items():
            kind = feature[key].WhichOneof("kind")
            got = list(getattr(feature[key], kind).value)
            flat = value if isinstance(value, list) else [value]
            while any(isinstance(v, list) for v in flat):
                flat = [w for v in flat for w in (v if isinstance(v, list) else [v])]
            flat = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v for v in flat]
            if kind == "bytes_list":
                assert got == [v.encode() if isinstance(v, str) else v for v in flat]
            elif kind == "float_list":
                assert got == [float(np.float32(v)) for v in flat] and all(math.isfinite(v) for v in got)
            else:
                assert got == [int(v) for v in flat]


def test_booleans_are_no_numbers_for_numeric_inputs(served):
    """The known fault: a JSON true in a float input was read as 1.0 (false as 0), in an int input as 1;
    TF Serving's REST API refuses them too."""
    for request in (
        {"instances": [{"x": [True, 2.0, 3.5], "ids": [1, 2]}]},
        {"inputs": {"x": [[1.0, 2.0, 3.5]], "ids": [[False, 2]]}},
        {"signature_name": "single", "instances": [[True, False, True]]},
    ):
        with pytest.raises(RequestError, match=r"input '(x|ids)' takes (float32|int32) values, not true or false"):
            parse(json.dumps(request).encode(), specs_of, 64)
        status, reply = post(served + ":predict", json.dumps(request).encode())
        assert status == 400 and "not true or false; send numbers" in one_line(reply["error"])
    status, reply = post(served + ":predict", b'{"instances": [{"x": [1, 2.0, 3.5], "ids": [1, 2]}], "stream": false}')
    assert status == 200 and reply["predictions"] == [{"score": 1.0 * 0.5 - 2.5 + 7.0 + 3, "ids": [3, 6]}]


def test_ints_past_an_int_inputs_range_are_refused_not_wrapped():
    """The fault: 3000000000 in an int32 input became -1294967296 (and 2**63 in an int64 input a
    negative number): a wrong answer for a number JSON holds."""
    with pytest.raises(RequestError, match=r"input 'ids' takes int32 values, from -2147483648 to 2147483647; got"):
        parse(b'{"instances": [{"x": [1, 2, 3], "ids": [3000000000, 1]}]}', specs_of, 64)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"signature_name": "text", "instances": [{"b64": "é"}]}, "invalid base64 in a {'b64': ...} value"),
        ({"signature_name": "text", "instances": ["\ud800"]}, "input 'text' holds a lone surrogate '\\ud800'"),
        ({"signature_name": ["text"], "instances": ["a"]}, '"signature_name" is the name of a signature, a string'),
        ({"signature_name": "text", "instances": json.loads("[" * 900 + '"a"' + "]" * 900)}, "is not a rectangular"),
    ],
    ids=["b64-not-ascii", "lone-surrogate", "signature-list", "deep-strings"],
)
def test_bodies_that_raised_in_the_parser_are_400_in_one_line(body, message, served):
    """The faults: a 500 'internal error' for non-ASCII base64 (ValueError), a lone surrogate
    (UnicodeEncodeError), a signature_name that is a list (TypeError: unhashable) and strings nested
    deeper than the recursion limit (RecursionError)."""
    status, reply = post(served + ":predict", json.dumps(body).encode("utf-8", "surrogatepass"))
    assert status == 400 and message in one_line(reply["error"]), reply


@pytest.mark.parametrize(
    "features, dtypes, message",
    [
        ({"x": 10**23}, {"x": "int64"}, "feature 'x' takes int64 values"),
        ({"x": 10**400}, {}, "feature 'x' takes int64 values"),
        ({"x": 1e39}, {}, "feature 'x' takes finite float32 values"),
        ({"x": math.inf}, {}, "feature 'x' takes finite float32 values"),
        ({"x": "\ud800"}, {}, "feature 'x' holds a lone surrogate"),
        ({"x": {"b64": "é"}}, {}, "invalid base64"),
        ({"x": json.loads("[" * 900 + "1" + "]" * 900)}, {"x": "string"}, "feature 'x' takes strings"),
    ],
    ids=["int64-past", "huge-int", "float32-past", "infinity", "lone-surrogate", "b64-not-ascii", "deep"],
)
def test_classify_features_that_raised_or_went_through_are_refused_in_one_line(features, dtypes, message):
    """The faults: a ValueError (500) for ints past int64 and non-ASCII base64, OverflowError for huge
    ints, UnicodeEncodeError for a lone surrogate, RecursionError for deep nesting; and infinities
    (JSON's 1e400, or past float32) went into the examples."""
    body = json.dumps({"examples": [features]}).encode("utf-8", "surrogatepass")
    with pytest.raises(RequestError, match=re.escape(message)):
        parse_examples(body, dtypes)


# --- --set overrides ------------------------------------------------------------------------------------


def flat_keys(tree, prefix=""):
    if not isinstance(tree, dict) or not tree:
        return {prefix[:-1]: tree}
    return {k: v for key, value in tree.items() for k, v in flat_keys(value, f"{prefix}{key}.").items()}


BASE = flat_keys(yaml.safe_load(to_yaml(experiment_config("mnist_resnet"))))
KEYS = sorted(BASE)
GROUPS = sorted({key.rsplit(".", n)[0] for key in KEYS for n in (1, 2) if "." in key})
YAML_VALUES = [
    "1", "0", "-1", "1.5", "2e-4", "1e400", ".nan", "true", "no", "null", "~", "", "[]", "{}", "[16, 32]", "{a: 1}",
    "'x'", "0x10", "1_000", "[", "{", "- 1", "a: b", "2025-01-01", "!!binary aGk=", "!!set {a}", "!!int x",
    "!!python/name:os.system", '"a\\nb"', "'\t'", "*a", "&a 1", "123456789012345678901234567890", "[" * 200,
    "resnet", "vit", "adamw", "cosine", "mnist", "randaug", "higher",
]  # fmt: skip


def held(config, key):
    node = config
    for part in key.split("."):
        node = getattr(node, part)
    return node.as_dict() if hasattr(node, "as_dict") else node


def same(got, expected):
    """Whether a config value is the YAML value: numbers by value (NaN is NaN), lists and mappings in full."""
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(k in got and same(got[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(got, (list, tuple)) and len(got) == len(expected) and all(map(same, got, expected))
    if isinstance(got, (int, float)) and isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return got == expected or (math.isnan(got) and math.isnan(expected))
    return got == expected and type(got) is type(expected)


def set_value(text):
    """What a --set value means: YAML, where a number YAML 1.1 keeps as text ('2e-4') is the number."""
    value = yaml.safe_load(text) if text else ""
    try:
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value


@fuzz(80)
@given(
    assignments=st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(KEYS),
                st.sampled_from(GROUPS),
                st.text(max_size=12).filter(lambda k: "=" not in k),
                st.sampled_from(["", ".", "a..b", "imports", "task.name"]),
            ),
            st.one_of(
                st.sampled_from(YAML_VALUES),
                st.sampled_from(KEYS).map(lambda k: json.dumps(BASE[k])),
                st.text(max_size=8),
            ),
        ),
        min_size=1,
        max_size=2,
    )
)
def test_set_overrides_hold_their_value_or_are_refused_in_one_line(assignments):
    """Any key (leaves, groups, unknown, control characters) and any value (YAML of every kind, tags,
    dates, bytes, text): experiment_config refuses in one line or holds the value YAML reads."""
    sets = [f"{key}={value}" for key, value in assignments]
    try:
        config = experiment_config("mnist_resnet", sets=sets)
    except GardenError as error:
        one_line(error)
        return
    key, value = assignments[-1]
    expected = set_value(value)
    got = held(config, key.strip())
    if key.strip() == "task.model.tokenizer.lowercase" and expected is None:  # unset: resolved from the model
        return
    assert same(got, expected), (sets, got, expected)


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("task.train_data=5", "config key 'task.train_data' is a group of keys, not 5; set one of them"),
        ("trainer=", "config key 'trainer' is a group of keys, not ''"),
        ("task.model.lora=no", "config key 'task.model.lora' is a group of keys, not False"),
        ("task.model.head.type=1", "config key 'task.model.head.type' names a registered head, got 1"),
        ("task.loss.type=null", "config key 'task.loss.type' names a registered loss, got None"),
        ("task.model.backbone.type=[1, 2]", "names a registered backbone, got [1, 2]"),
        ("task.train_data.input_path=2025-01-01", "'task.train_data.input_path' holds a date (2025-01-01)"),
        ("task.train_data.dataset=!!binary aGk=", "'task.train_data.dataset' holds bytes (b'hi')"),
        ("task.train_data.classes=!!set {a}", "'task.train_data.classes' holds a set ({'a'})"),
        ("task.train_data.classes=!!omap [a: 1]", "'task.train_data.classes' holds a tuple (('a', 1))"),
        ("trainer.train_steps=!!int x", "is not valid YAML: invalid literal for int() with base 10: 'x'"),
        ("trainer.train_steps=" + "[" * 600, "is nested too deeply"),
        ("imports=1", "imports is a list of module names, such as [my_models]; got 1"),
        ("imports=os", "imports is a list of module names, such as [my_models]; got 'os'"),
        ("task.name=other", "task.name is the experiment's name (mnist_resnet), not 'other'"),
        ("task.train_data.cycle_length=''", "config key 'task.train_data.cycle_length' expects a number, got ''"),
        ("task.model.tokenizer.lowercase=1", "config key 'task.model.tokenizer.lowercase' expects true or false"),
        ("runtime.distribution_strategy=5", "expects text, got 5; quote it for text: '5'"),
        ("task.model.lora.targets=query", "config key 'task.model.lora.targets' expects a list such as [a, b]"),
        ("a\nb=1", "unknown config key 'a\\nb'"),
        ('task.train_data.aug_type="a\\nb"', "task.train_data.aug_type 'a\\nb' is not randaug"),
    ],
)
def test_set_values_that_raised_or_were_lost_are_refused_in_one_line(assignment, message):
    """The faults: AttributeError or TypeError from a value where a group of keys belongs, a registered
    part's type that is no text, YAML's dates, bytes and sets and its ValueError and RecursionError,
    an `imports` that is no list (a string imported each of its letters); a task.name that was
    dropped without a word; text where a number or a list belongs (TypeError later); a key or value
    with a line break made the message two lines."""
    with pytest.raises(GardenError) as refused:
        experiment_config("mnist_resnet", sets=[assignment])
    assert message in one_line(refused.value)
