"""Fuzzing (Hypothesis): what users hand Garden, against an independent reader of the same input.

- Text tables and JSON lines, in memory and streamed, against Python's csv and json on the same bytes.

Each is read as the reference reads it, or refused in one line (GardenError; HTTP 400 {"error": ...}),
never another exception or a 5xx. A few examples each, the same on every run; GARDEN_CHAOS_POINTS=N
(as `make chaos` sets) tries N times as many. Each fault they found has its own test beside them.
"""

import csv
import io
import json
import os
import re
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from garden.config import DataConfig
from garden.data import text_datasets
from garden.data.streams import bad_records_named, raw_examples
from garden.data.text_files import label_order, read_table
from garden.errors import GardenError

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
