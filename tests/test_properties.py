"""Property-based tests (hypothesis) for every data reader and for sub-word alignment.

The readers' contract: for any input a reader returns a correct parse, or raises DataError whose
message names the source (the path string, or "data (list)" / "DataFrame" / "Dataset") and, where a
row or line is at fault, that row or line. Never another exception, never a silently dropped row or
label. Valid generated inputs must round-trip; invalid ones must fail with the right location.

Generated inputs include arbitrary Unicode (combining marks, emoji, RTL, control characters other
than NUL, \\u2028, \\x0b, \\x1c), empty lines, very long words, 100k-character fields, CRLF / lone CR /
mixed line endings, a UTF-8 byte-order mark, ragged rows, number-like labels, and quotes and
delimiters inside fields.

Every reader test runs 200 examples (the count is in its name). The bugs these properties found in
src/ (deeply nested JSON, 5,000-digit integers, tags ending in a newline, ClassLabel id -1, CSV fields
over 128k characters, duplicate DataFrame columns, lone surrogates, max_length below the special
tokens) are fixed; each keeps a test of its own at the end of the file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import WORDS
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from labeltune import RunConfig
from labeltune.config import DataSettings
from labeltune.data import LabelMap
from labeltune.data.conll import normalise_tags, read_token_examples
from labeltune.data.examples import TokenExample
from labeltune.data.readers import read_text_examples
from labeltune.errors import ConfigError, DataError
from labeltune.tasks.token import build_tag_map, encode_token_examples

# database=None: no example database (hypothesis still keeps its own self-ignored .hypothesis/ cache)
READER = settings(max_examples=200, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                         HealthCheck.data_too_large, HealthCheck.large_base_example,
                                         HealthCheck.filter_too_much])

_SCRATCH: Path | None = None


@contextlib.contextmanager
def _folder():
    """One scratch folder for the whole module (made on first use, removed at module teardown):
    every example overwrites its file, so no per-example directory is created and deleted."""
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = Path(tempfile.mkdtemp(prefix="labeltune-properties-"))
    yield str(_SCRATCH)


@pytest.fixture(scope="module", autouse=True)
def _remove_scratch():
    yield
    global _SCRATCH
    if _SCRATCH is not None:
        shutil.rmtree(_SCRATCH, ignore_errors=True)
        _SCRATCH = None


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------

SPECIALS = ["\u0301", "e\u0301", "\u0915\u094d\u0937", "\U0001F600", "\U0001F469\u200d\U0001F469\u200d\U0001F467",
            "\U0001F1EB\U0001F1F7", "\u05e9\u05dc\u05d5\u05dd", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u202e",
            "\u200f", "\u200b", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0",
            "\u3000", "\x01", "\x07", "\x7f", "\ufeff", "\ufffd", "\t", " ", '"', "'", ",", ";", "\\", "{", "}", "[",
            "\u00df", "\u0130", "\uFB01", "1", "1.0", "-DOCSTART-"]
WHITESPACE = [" ", "\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\u2028", "\u2029", "\u3000"]
NEWLINES = ["\n", "\r\n", "\r"]
NUMBERISH = ["1", "1.0", "01", " 2 ", "-3", "+4", "1e5", "0x1F", "nan", "NaN", "inf", "1,5", "\u0661", "\uff11"]

chars = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
atoms = st.one_of(chars, st.sampled_from(SPECIALS))


def _nonblank(s: str) -> str:
    return s if s.strip() else s + "x"


def _repeat(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


short_text = st.lists(atoms, max_size=16).map("".join)
long_word = st.builds(_repeat, st.sampled_from(["a", "\u00e9", "\U0001F600", "\u05d0", "x\u0301", "ab,\"c"]),
                      st.integers(1000, 4000))
huge_field = st.builds(_repeat, st.sampled_from(["a", "\u00e9,\"", "\U0001F600 x", "\u2028z\x0b", "\r\n\"q"]),
                       st.just(100_000))
# a raw value: mostly short, sometimes a long word (1 in 8), rarely a 100k-character field (1 in 16)
raw_value = st.integers(0, 15).flatmap(lambda i: huge_field if i == 0 else long_word if i < 3 else short_text)
text_value = raw_value.map(_nonblank)  # valid text: something left after strip()
label_value = st.one_of(st.sampled_from(NUMBERISH), short_text).map(_nonblank)
blank_value = st.lists(st.sampled_from(WHITESPACE + ["\r", "\n"]), max_size=4).map("".join)


def _no_newline(s: str) -> str:
    return s.replace("\r", " ").replace("\n", " ")


def _breaks(s: str) -> int:
    """Line breaks in s, counting \\r\\n, \\r and \\n as one each (the readers' notion of a line)."""
    return s.count("\r\n") + s.replace("\r\n", "").count("\r") + s.replace("\r\n", "").count("\n")


def _line_of(content: str, pos: int) -> int:
    """1-based line number of character ``pos``."""
    return _breaks(content[:pos]) + 1


def _write(folder: str, name: str, content: str | bytes, bom: bool = False) -> Path:
    path = Path(folder) / name
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def _expect_error(fn, source, where: str | None = None, contains: str | None = None) -> DataError:
    """fn() must raise DataError naming ``source`` (and ``where`` right after it)."""
    with pytest.raises(DataError) as info:
        fn()
    msg = str(info.value)
    assert msg.startswith(f"{source}"), msg[:300]
    if where is not None:
        assert msg.startswith(f"{source}, {where}:"), (where, msg[:300])
    if contains is not None:
        assert contains in msg, (contains, msg[:300])
    return info.value


def _as_tuples(examples):
    return [(e.text, e.pair, e.label, e.where) for e in examples]


# ---------------------------------------------------------------------------------------------
# CSV / TSV
# ---------------------------------------------------------------------------------------------

# column names: unique after strip(), no BOM (a leading BOM is indistinguishable from the file's own)
col_name = st.lists(st.one_of(chars, st.sampled_from(SPECIALS)).filter(lambda c: "\ufeff" not in c),
                    min_size=1, max_size=8).map("".join).map(_nonblank)


@st.composite
def table_spec(draw, tsv: bool = False, min_rows: int = 1):
    """Columns (text, label, [pair], extras...) in a random order and rows of valid values."""
    if tsv:  # no quoting in TSV: a field cannot hold a tab or a line break
        clean = lambda s: s.replace("\t", " ").replace("\r", " ").replace("\n", " ")  # noqa: E731
    else:  # quoted fields keep \r\n, a lone \r and \n exactly
        clean = lambda s: s  # noqa: E731
    names = draw(st.lists(col_name.map(clean).map(_nonblank), min_size=2, max_size=5,
                          unique_by=lambda s: s.strip()))
    use_pair = len(names) >= 3 and draw(st.booleans())
    order = draw(st.permutations(range(len(names))))
    n = draw(st.integers(min_rows, 6))
    rows = []
    for _ in range(n):
        row = {names[0]: _nonblank(clean(draw(text_value))), names[1]: _nonblank(clean(draw(label_value)))}
        for extra in names[2:]:
            row[extra] = clean(draw(text_value if (use_pair and extra == names[2]) else raw_value))
        rows.append(row)
    return dict(names=names, columns=[names[i] for i in order], use_pair=use_pair, rows=rows,
                newlines=draw(st.lists(st.sampled_from(NEWLINES), min_size=n + 1, max_size=n + 1)),
                pad=[draw(st.sampled_from(["", " ", "  ", "\t"])) if not tsv else "" for _ in names],
                quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
                bom=draw(st.booleans()), final_newline=draw(st.booleans()),
                trailing=draw(st.lists(st.sampled_from(NEWLINES), max_size=3).map("".join)),
                path_case=draw(st.sampled_from(["data", "d\u00e4t\u00e4 file", "x.y"])),
                upper_ext=draw(st.booleans()), as_path=draw(st.booleans()))


def _settings_for(spec):
    names = spec["names"]
    return DataSettings(text_column=names[0].strip(), label_column=names[1].strip(),
                        text_pair_column=names[2].strip() if spec["use_pair"] else None)


def _expected_example(spec, row, where):
    names = spec["names"]
    label = row[names[1]].strip()
    return (row[names[0]].strip(), row[names[2]].strip() if spec["use_pair"] else None, label, where)


def _csv_record(fields, newline, quoting):
    if any("\r" in f or "\n" in f for f in fields):
        quoting = csv.QUOTE_ALL  # csv.writer leaves a lone \r unquoted when the terminator is \n
    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline, quoting=quoting).writerow(fields)
    return buf.getvalue()


def _tsv_record(fields, newline, quoting=None):
    return "\t".join(fields) + newline


def _build_table(spec, tsv: bool, fault: str | None = None, k: int = 0, bad: str = ""):
    """The file's text and, per data row, (start, end) character positions in it (excluding the
    terminator). ``fault`` changes row k (1-based)."""
    record = _tsv_record if tsv else _csv_record
    cols = spec["columns"]
    header = [p + c + p for p, c in zip(spec["pad"], cols)]
    if fault == "dup_header":
        header = header + [cols[0]]
    content = record(header, spec["newlines"][0], spec["quoting"])
    spans, extra = [], {"header_len": len(content)}
    for i, row in enumerate(spec["rows"], start=1):
        fields = [row[c] for c in cols]
        nl = spec["newlines"][i]
        if i == k:
            if fault == "few":  # the (non-blank) text and fewer than all the other fields
                fields = [row[spec["names"][0]]] + [row[c] for c in cols if c != spec["names"][0]][: len(cols) - 2]
            elif fault == "many":
                fields = fields + [bad]
            elif fault in ("blank_text", "blank_label"):
                col = spec["names"][0 if fault == "blank_text" else 1]
                fields = [bad if c == col else row[c] for c in cols]
            elif fault == "blank_line":
                extra["blank_line"] = _breaks(content) + 1
                content += bad + spec["newlines"][i - 1]  # the previous record's terminator: no \r + \n merge
        start = len(content)
        if i == k and fault == "garbage_after_quote":
            pos = cols.index(spec["names"][0])
            rec = ",".join(['"a"' if j == pos else "b" for j in range(len(cols))]).replace('"a"', '"a"x', 1)
            extra["garbage_line"] = _breaks(content) + 1
            content += rec + nl
        elif i == k and fault == "unclosed_quote":
            content += '"never closed,' + ",".join("b" for _ in cols) + nl
        else:
            content += record(fields, nl, spec["quoting"])
        end = len(content) - len(nl)
        spans.append((start, end))
    if not spec["final_newline"] and fault != "unclosed_quote":
        content = content[: spans[-1][1]]
    content += spec["trailing"]
    return content, spans, extra


def _table_path(folder, spec, tsv):
    ext = ".tsv" if tsv else ".csv"
    return Path(folder) / (spec["path_case"] + (ext.upper() if spec["upper_ext"] else ext))


def _check_table_round_trip(spec, tsv):
    content, spans, _ = _build_table(spec, tsv)
    with _folder() as folder:
        path = _table_path(folder, spec, tsv)
        _write(folder, path.name, content, spec["bom"])
        got = read_text_examples(path if spec["as_path"] else str(path), _settings_for(spec))
        expected = [_expected_example(spec, row, f"row {i} (line {_line_of(content, end)})")
                    for i, (row, (_, end)) in enumerate(zip(spec["rows"], spans), start=1)]
        assert _as_tuples(got) == expected


@READER
@given(spec=table_spec())
def test_csv_reader_round_trip_200_examples(spec):
    """Valid CSV written by the csv module (mixed line endings, BOM, quotes/commas/newlines in
    fields, 100k fields, number-like labels) reads back exactly: every row, stripped text and
    label, the right row and line."""
    _check_table_round_trip(spec, tsv=False)


@READER
@given(spec=table_spec(tsv=True))
def test_tsv_reader_round_trip_200_examples(spec):
    """Valid TSV (no quoting: quotes are literal) reads back exactly, with row and line numbers."""
    _check_table_round_trip(spec, tsv=True)


TABLE_FAULTS = ["few", "many", "blank_text", "blank_label", "blank_line", "garbage_after_quote", "unclosed_quote",
                "dup_header", "missing_column", "bad_utf8", "empty", "header_only"]


def _check_table_fault(spec, tsv, fault, k, bad, data):
    if tsv and fault in ("garbage_after_quote", "unclosed_quote"):
        fault = "many"  # quotes mean nothing in TSV
    k = min(k, len(spec["rows"]))
    if fault == "unclosed_quote":
        k = len(spec["rows"])  # nothing after it that a later quote could close
    if fault in ("blank_text", "blank_label") and tsv:
        bad = bad.replace("\r", "").replace("\n", "").replace("\t", "")
    if fault == "blank_line":  # (in TSV a tab-only line is a row of empty fields, not a blank line)
        bad = data.draw(st.sampled_from(["", " ", "  \x0b", "\xa0"] + ([] if tsv else ["\t"])))
    if fault == "many":
        bad = bad.replace("\t", " ").replace("\r", " ").replace("\n", " ") if tsv else bad
    content, spans, extra = _build_table(spec, tsv, fault, k, bad)
    settings_ = _settings_for(spec)
    with _folder() as folder:
        path = _table_path(folder, spec, tsv)
        where = None
        contains = None
        if fault in ("few", "many"):
            where, contains = f"row {k} (line {_line_of(content, spans[k - 1][1])})", "fields"
        elif fault in ("blank_text", "blank_label"):
            col = spec["names"][0 if fault == "blank_text" else 1].strip()
            where, contains = f"row {k} (line {_line_of(content, spans[k - 1][1])})", f"column {col!r} is empty"
        elif fault == "blank_line":
            where, contains = f"line {extra['blank_line']}", "blank line"
        elif fault == "garbage_after_quote":
            where, contains = f"line {extra['garbage_line']}", "malformed CSV"
        elif fault == "unclosed_quote":
            contains = "malformed CSV"
        elif fault == "dup_header":
            where, contains = "line 1", "header"
        elif fault == "missing_column":
            settings_ = DataSettings(text_column="\u2603 no such column", label_column=settings_.label_column)
            contains = "not found"
        elif fault == "bad_utf8":
            cut = data.draw(st.integers(0, len(content.encode("utf-8"))))
            raw = content.encode("utf-8")
            content = raw[:cut] + data.draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x80"])) + raw[cut:]
            contains = "not UTF-8"
        elif fault == "empty":
            content = data.draw(st.lists(st.sampled_from(WHITESPACE + NEWLINES), max_size=5).map("".join))
            contains = "file is empty"
        elif fault == "header_only":
            content = content[: extra["header_len"]] + spec["trailing"]
            contains = "no examples found"
        _write(folder, path.name, content, spec["bom"] and fault != "bad_utf8")
        err = _expect_error(lambda: read_text_examples(str(path), settings_), path, where, contains)
        if fault == "unclosed_quote":
            assert ", line " in str(err)


@READER
@given(spec=table_spec(), fault=st.sampled_from(TABLE_FAULTS), k=st.integers(1, 6), bad=blank_value,
       data=st.data())
def test_csv_reader_invalid_files_raise_data_error_with_location_200_examples(spec, fault, k, bad, data):
    """Ragged rows (too few / too many fields), blank text or label, blank lines inside the data,
    malformed quoting, bad headers, non-UTF-8 bytes, empty files: DataError naming the file and
    the row/line at fault."""
    if fault == "many":
        bad = data.draw(raw_value)
    _check_table_fault(spec, False, fault, k, bad, data)


@READER
@given(spec=table_spec(tsv=True), fault=st.sampled_from(TABLE_FAULTS), k=st.integers(1, 6), bad=blank_value,
       data=st.data())
def test_tsv_reader_invalid_files_raise_data_error_with_location_200_examples(spec, fault, k, bad, data):
    """The same faults in TSV files give DataError naming the file and the row/line."""
    if fault == "many":
        bad = data.draw(raw_value)
    _check_table_fault(spec, True, fault, k, bad, data)


CSVISH = st.sampled_from(["a", "b", " ", ",", '"', "\n", "\r", "\r\n", "\t", "\u00e9", "\u2028", "\x0b", "\x1c",
                          "1", "\ufeff", "\U0001F600", '""'])


@READER
@given(header=st.one_of(st.sampled_from(["text,label", "label,text", "text,label,x", " text , label ",
                                        '"text","label"', "text,label,text"]),
                       st.lists(CSVISH, max_size=8).map(lambda h: "text,label" + "".join(h))),
       nl=st.sampled_from(NEWLINES), body=st.lists(CSVISH, max_size=40).map("".join), bom=st.booleans())
def test_csv_reader_arbitrary_bytes_parse_or_data_error_200_examples(header, nl, body, bom):
    """Arbitrary CSV-ish text: either DataError naming the file, or every record is an example
    (none dropped), in order, with its text and label stripped."""
    content = header + nl + body
    with _folder() as folder:
        path = _write(folder, "fuzz.csv", content, bom)
        try:
            got = read_text_examples(str(path), DataSettings())
        except DataError as e:
            assert str(e).startswith(str(path))
            return
    records = list(csv.reader(io.StringIO(content.rstrip("\r\n") + "\n", newline="")))
    assert got, "an empty result must be a DataError"
    cols = [h.strip() for h in records[0]]
    rows = [dict(zip(cols, r)) for r in records[1:]]
    assert [(e.text, e.label) for e in got] == [(r["text"].strip(), r["label"].strip()) for r in rows]
    assert [e.where.split(" (")[0] for e in got] == [f"row {i}" for i in range(1, len(rows) + 1)]


# ---------------------------------------------------------------------------------------------
# JSONL (text + label)
# ---------------------------------------------------------------------------------------------

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False,
                        allow_infinity=False), short_text)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                               st.dictionaries(short_text, inner, max_size=3)),
                          max_leaves=6)
json_label = st.one_of(label_value, st.integers(-10**18, 10**18), st.floats(allow_nan=False, allow_infinity=False),
                       st.sampled_from([1, 1.0, 2, 2.0, 0, -0.0, 10**16 * 1.0]))
BLANK_LINES = ["", " ", "\t", "  \t ", "\x0b", "\x1c", "\u2028", "\xa0"]


@st.composite
def jsonl_spec(draw):
    text_col = draw(st.sampled_from(["text", "sentence", "t\u00e9xt \U0001F600", " padded "]))
    label_col = draw(st.sampled_from(["label", "y", "\u05ea\u05d5\u05d5\u05d9\u05ea"]))
    n = draw(st.integers(1, 6))
    rows = []
    for _ in range(n):
        row = {text_col: draw(text_value), label_col: draw(json_label)}
        for key in draw(st.lists(short_text, max_size=2)):
            if key not in row:
                row[key] = draw(json_value)
        rows.append(row)
    return dict(text_col=text_col, label_col=label_col, rows=rows,
                ascii=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
                newlines=draw(st.lists(st.sampled_from(NEWLINES), min_size=n, max_size=n)),
                blanks=draw(st.lists(st.lists(st.sampled_from(BLANK_LINES), max_size=2), min_size=n + 1,
                                     max_size=n + 1)),
                bom=draw(st.booleans()), final_newline=draw(st.booleans()))


def _build_jsonl(spec, fault=None, k=0, bad_line=None):
    """(content, line number of each row)."""
    content, lines = "", []
    for i, row in enumerate(spec["rows"], start=1):
        nl = spec["newlines"][i - 1]
        for blank in spec["blanks"][i - 1]:
            content += blank + nl
        lines.append(_breaks(content) + 1)
        line = bad_line if (i == k and bad_line is not None) else json.dumps(row, ensure_ascii=spec["ascii"][i - 1])
        content += line + nl
    for blank in spec["blanks"][-1]:
        content += blank + "\n"
    if not spec["final_newline"] and not spec["blanks"][-1]:
        content = content.rstrip("\r\n")
    return content, lines


def _label_name(value) -> str:
    """LabelMap's name of a raw label: integral floats become ints (1.0 -> "1"), then str().strip()."""
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value).strip()


@READER
@given(spec=jsonl_spec())
def test_jsonl_reader_round_trip_200_examples(spec):
    """JSONL written with json.dumps (ASCII-escaped or raw Unicode, blank and whitespace-only lines,
    mixed line endings, BOM) reads back exactly; string labels are stripped, numeric labels stay
    numbers of the same type, and LabelMap names them consistently (1 and 1.0 -> "1")."""
    content, lines = _build_jsonl(spec)
    with _folder() as folder:
        path = _write(folder, "rows.jsonl", content, spec["bom"])
        got = read_text_examples(path, DataSettings(text_column=spec["text_col"], label_column=spec["label_col"]))
    expected = []
    for row, line in zip(spec["rows"], lines):
        label = row[spec["label_col"]]
        expected.append((row[spec["text_col"]].strip(), None, label.strip() if isinstance(label, str) else label,
                         f"line {line}"))
    assert _as_tuples(got) == expected
    assert [type(e.label) for e in got] == [type(x[2]) for x in expected]
    names = {_label_name(e.label) for e in got}
    if len(names) >= 2:
        labels = LabelMap.build([e.label for e in got])
        assert sorted(labels.names) == sorted(names)
        for e in got:
            assert labels.names[labels.encode(e.label)] == _label_name(e.label)


JSONL_FAULTS = ["bad_json", "not_object", "text_not_str", "text_blank", "text_missing", "label_missing",
                "label_null", "label_blank", "label_nan", "bom_mid", "control_char", "empty", "bad_utf8"]


@READER
@given(spec=jsonl_spec(), fault=st.sampled_from(JSONL_FAULTS), k=st.integers(1, 6), data=st.data())
def test_jsonl_reader_invalid_lines_raise_data_error_with_line_200_examples(spec, fault, k, data):
    """Invalid JSON, non-objects, non-text / blank / missing text, null / NaN / blank / missing
    labels, a BOM or raw control character inside a line, empty or non-UTF-8 files: DataError
    naming the file and the line."""
    k = min(k, len(spec["rows"]))
    row = dict(spec["rows"][k - 1])
    tc, lc = spec["text_col"], spec["label_col"]
    bad_line, contains, where_line = None, None, True
    if fault == "bad_json":
        full = json.dumps(row)
        bad_line = full[: data.draw(st.integers(1, len(full) - 1))]
        bad_line = bad_line if bad_line.strip() else "{"
        contains = "not valid JSON"
    elif fault == "not_object":
        bad_line = json.dumps(data.draw(st.one_of(st.lists(json_scalar, max_size=3), json_scalar)))
        assume(bad_line.strip())
        contains = "expected a JSON object"
    elif fault == "text_not_str":
        row[tc] = data.draw(st.one_of(st.integers(), st.floats(allow_nan=False), st.lists(short_text, max_size=2),
                                      st.dictionaries(short_text, json_scalar, max_size=2), st.booleans()))
        contains = f"text in column {tc!r} is not text"
    elif fault == "text_blank":
        row[tc] = data.draw(blank_value)
        contains = f"text in column {tc!r} is empty"
    elif fault in ("text_missing", "label_missing"):
        del row[tc if fault == "text_missing" else lc]
        if k == 1:  # the first row names the columns
            contains, where_line = "not found", False
        else:
            contains = "is empty"
    elif fault == "label_null":
        row[lc] = None
        contains = "is empty"
    elif fault == "label_blank":
        row[lc] = data.draw(blank_value)
        contains = "is empty"
    elif fault == "label_nan":
        row[lc] = float("nan")
        contains = "is empty"
    elif fault == "bom_mid":
        if k == 1:
            k = len(spec["rows"]) + 1  # a BOM on a later line than the first
            spec = dict(spec, rows=spec["rows"] + [row], ascii=spec["ascii"] + [True],
                        newlines=spec["newlines"] + ["\n"], blanks=spec["blanks"] + [[]])
        bad_line = "\ufeff" + json.dumps(row)
        contains = "not valid JSON"
    elif fault == "control_char":
        c = data.draw(st.sampled_from(["\x0b", "\x1c", "\x01", "\x1f", "\t"]))
        bad_line = json.dumps(row, ensure_ascii=False)[:-1] + f', "{c}": 1}}'
        contains = "not valid JSON"
    if fault == "empty":
        content = data.draw(st.lists(st.sampled_from(WHITESPACE + NEWLINES), max_size=6).map("".join))
        contains, where_line = "file is empty", False
    else:
        if bad_line is None:
            bad_line = json.dumps(row, ensure_ascii=spec["ascii"][k - 1])
        content, lines = _build_jsonl(spec, fault, k, bad_line)
    if fault == "bad_utf8":
        raw = content.encode("utf-8")
        cut = data.draw(st.integers(0, len(raw)))
        content = raw[:cut] + b"\xff" + raw[cut:]
        contains, where_line = "not UTF-8", False
    with _folder() as folder:
        path = _write(folder, "rows.jsonl", content, spec["bom"] and fault != "bad_utf8")
        where = f"line {lines[k - 1]}" if where_line else None
        _expect_error(lambda: read_text_examples(str(path), DataSettings(text_column=tc, label_column=lc)),
                      path, where, contains)


# ---------------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------------

small_text = st.lists(atoms, min_size=1, max_size=8).map("".join).map(_nonblank)
PARQUET_FAULTS = [None, None, None, "text_null", "text_blank", "label_null", "label_blank", "label_nan",
                  "text_int", "missing_column", "no_rows", "corrupt", "truncated"]


@READER
@given(texts=st.lists(small_text, min_size=1, max_size=4), label_kind=st.sampled_from(["str", "int", "float"]),
       labels=st.lists(st.one_of(st.sampled_from(NUMBERISH), small_text), min_size=4, max_size=4),
       ints=st.lists(st.integers(-2**62, 2**62), min_size=4, max_size=4),
       fault=st.sampled_from(PARQUET_FAULTS), k=st.integers(1, 4), data=st.data())
def test_parquet_reader_round_trip_and_faults_200_examples(texts, label_kind, labels, ints, fault, k, data):
    """Parquet written by pyarrow (string, int64 or float64 labels) reads back exactly with row
    numbers; nulls, blank text/labels, NaN labels, non-text columns, missing columns, zero rows and
    corrupt / truncated files raise DataError naming the file (and the row)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(texts)
    k = min(k, n)
    label_vals = {"str": [_nonblank(x) for x in labels[:n]], "int": ints[:n],
                  "float": [x / 4 for x in ints[:n]]}[label_kind]
    text_vals = list(texts)
    types = {"text": pa.string(), "label": {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}[label_kind]}
    where, contains = f"row {k}", None
    if fault == "text_null":
        text_vals[k - 1], contains = None, "is empty"
    elif fault == "text_blank":
        text_vals[k - 1], contains = data.draw(blank_value), "is empty"
    elif fault == "label_null":
        label_vals[k - 1], contains = None, "is empty"
    elif fault == "label_blank":
        if label_kind == "str":
            label_vals[k - 1] = data.draw(blank_value)
        else:
            label_vals[k - 1] = None
        contains = "is empty"
    elif fault == "label_nan":
        if label_kind == "str":
            label_vals[k - 1] = None
        else:
            types["label"] = pa.float64()
            label_vals = [float(x) for x in label_vals]
            label_vals[k - 1] = float("nan")
        contains = "is empty"
    elif fault == "text_int":
        types["text"] = pa.int64()
        text_vals = [i for i in range(n)]
        where, contains = "row 1", "is not text"
    elif fault in ("missing_column", "no_rows", "corrupt", "truncated"):
        where = None
        contains = {"missing_column": "not found", "no_rows": "file is empty", "corrupt": "cannot read Parquet",
                    "truncated": "cannot read Parquet"}[fault]
    schema = pa.schema([("text", types["text"]), ("label", types["label"]), ("extra \U0001F600", pa.int64())])
    table = pa.table({"text": text_vals, "label": label_vals, "extra \U0001F600": list(range(n))}, schema=schema)
    if fault == "no_rows":
        table = table.slice(0, 0)
    with _folder() as folder:
        path = Path(folder) / "t\u00e4ble.parquet"
        pq.write_table(table, path)
        if fault == "truncated":
            raw = path.read_bytes()
            path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
        elif fault == "corrupt":
            path.write_bytes(data.draw(st.binary(max_size=64)))
        s = DataSettings(text_column="nope" if fault == "missing_column" else "text")
        if fault is None:
            got = read_text_examples(str(path), s)
            assert _as_tuples(got) == [(t.strip(), None, lab.strip() if isinstance(lab, str) else lab, f"row {i}")
                                       for i, (t, lab) in enumerate(zip(text_vals, label_vals), start=1)]
            assert [type(e.label) for e in got] == [type(x) for x in label_vals]
        else:
            _expect_error(lambda: read_text_examples(str(path), s), path, where, contains)


# ---------------------------------------------------------------------------------------------
# label-text ("LABEL text" a line)
# ---------------------------------------------------------------------------------------------

label_token = st.one_of(
    st.sampled_from(["1", "1.0", "01", "-3", "__label__pos", "DESC:manner", "\u05d7\u05d9\u05d5\u05d1\u05d9",
                     "\U0001F600", "e\u0301", '"q"', "a,b"]),
    st.lists(st.one_of(chars, st.sampled_from(SPECIALS)).filter(lambda c: not any(x.isspace() or x == "\ufeff"
                                                                               for x in c)),
             min_size=1, max_size=6).map("".join))
separator = st.lists(st.sampled_from(WHITESPACE), min_size=1, max_size=3).map("".join)
line_text = raw_value.map(_no_newline).map(_nonblank)


@READER
@given(items=st.lists(st.tuples(label_token, separator, line_text), min_size=1, max_size=6),
       lead=st.lists(st.sampled_from(["", "", " ", "\t", "\x0b", "\u3000"]), min_size=6, max_size=6),
       blanks=st.lists(st.lists(st.sampled_from(BLANK_LINES), max_size=2), min_size=7, max_size=7),
       newlines=st.lists(st.sampled_from(NEWLINES), min_size=7, max_size=7),
       bom=st.booleans(), fault=st.sampled_from([None, None, None, "label_only", "empty", "bad_utf8"]),
       k=st.integers(1, 6), delim=st.sampled_from([None, ":"]), data=st.data())
def test_label_text_reader_round_trip_and_faults_200_examples(items, lead, blanks, newlines, bom, fault, k, delim,
                                                              data):
    """'LABEL text' lines: the label is everything before the first whitespace (any Unicode
    whitespace, which never ends a line), the text the stripped rest; \\x0b, \\x1c and \\u2028 in a
    text do not split lines; blank lines are skipped; a line with a label and no text is a DataError
    naming the file and line."""
    k = min(k, len(items))
    content, lines = "", []
    for i, (label, sep, text) in enumerate(items, start=1):
        for blank in blanks[i - 1]:
            content += blank + newlines[i - 1]
        lines.append(_breaks(content) + 1)
        if fault == "label_only" and i == k:
            content += lead[i - 1] + label + data.draw(st.sampled_from(["", " ", "\t\x0b"])) + newlines[i - 1]
        else:
            content += lead[i - 1] + label + sep + text + newlines[i - 1]
    if fault == "empty":
        content = "".join(b + "\n" for bs in blanks for b in bs)
    raw = content.encode("utf-8")
    if fault == "bad_utf8":
        cut = data.draw(st.integers(0, len(raw)))
        raw = raw[:cut] + b"\xc0\xaf" + raw[cut:]
    with _folder() as folder:
        path = _write(folder, "trec.txt", raw, bom and fault != "bad_utf8")
        s = DataSettings(format="label-text", label_delimiter=delim if fault is None else None)
        read = lambda: read_text_examples(str(path), s)  # noqa: E731
        if fault is None:
            expected = [(text.strip(), None, label.split(delim, 1)[0] if delim else label, f"line {line}")
                        for (label, _, text), line in zip(items, lines)]
            if delim and any(not x[2] for x in expected):  # ":x" with delimiter ":" leaves an empty label
                first = next(i for i, x in enumerate(expected) if not x[2])
                _expect_error(read, path, expected[first][3], "label in column 'label' is empty")
            else:
                assert _as_tuples(read()) == expected
        elif fault == "label_only":
            _expect_error(read, path, f"line {lines[k - 1]}", "only one field")
        elif fault == "empty":
            _expect_error(read, path, None, "file is empty")
        else:
            _expect_error(read, path, None, "not UTF-8")


# ---------------------------------------------------------------------------------------------
# in memory: list of dicts, pandas DataFrame, datasets.Dataset
# ---------------------------------------------------------------------------------------------

py_label = st.one_of(label_value, st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False))
MEMORY_FAULTS = [None, None, None, "not_dict", "text_not_str", "text_blank", "text_none", "label_none",
                 "label_nan", "label_blank", "label_missing", "one_dict", "empty", "unsupported"]


@READER
@given(rows=st.lists(st.tuples(short_text.map(_nonblank), py_label), min_size=1, max_size=6),
       fault=st.sampled_from(MEMORY_FAULTS), k=st.integers(1, 6), as_tuple=st.booleans(), data=st.data())
def test_list_of_dicts_reader_round_trip_and_faults_200_examples(rows, fault, k, as_tuple, data):
    """A list (or tuple) of dicts reads back exactly with 'row N'; non-dict rows, non-text or
    blank text, missing / None / NaN / blank labels, a lone dict, an empty list and unsupported
    types raise DataError naming 'data (list)' and the row."""
    k = min(k, len(rows))
    data_ = [{"text": t, "label": lab, "other": i} for i, (t, lab) in enumerate(rows)]
    name, where, contains = "data (list)", f"row {k}", None
    if fault == "not_dict":
        data_[k - 1] = data.draw(st.one_of(st.lists(short_text, max_size=2), short_text, st.integers(), st.none(),
                                           st.tuples(short_text, short_text)))
        contains = "expected a dict"
    elif fault == "text_not_str":
        data_[k - 1]["text"] = data.draw(st.one_of(st.integers(), st.binary(min_size=1, max_size=4),
                                                   st.lists(short_text, min_size=1, max_size=2), st.booleans()))
        contains = "is not text"
    elif fault == "text_blank":
        data_[k - 1]["text"], contains = data.draw(blank_value), "is empty"
    elif fault == "text_none":
        data_[k - 1]["text"], contains = None, "is empty"
    elif fault == "label_none":
        data_[k - 1]["label"], contains = None, "is empty"
    elif fault == "label_nan":
        data_[k - 1]["label"], contains = float("nan"), "is empty"
    elif fault == "label_blank":
        data_[k - 1]["label"], contains = data.draw(blank_value), "is empty"
    elif fault == "label_missing":
        del data_[k - 1]["label"]
        if k == 1:
            where, contains = None, "not found"
        else:
            contains = "is empty"
    elif fault == "one_dict":
        data_, where, contains = data_[0], None, "one dict"
    elif fault == "empty":
        data_, where, contains = [], None, "no examples found"
    elif fault == "unsupported":
        data_ = data.draw(st.sampled_from([iter(data_), 3, b"bytes", {1, 2}, 1.5]))
        name, where, contains = "data (list)", None, "cannot read data of type"
    if as_tuple and isinstance(data_, list):
        data_ = tuple(data_)
    if fault is None:
        got = read_text_examples(data_, DataSettings())
        assert _as_tuples(got) == [(t.strip(), None, lab.strip() if isinstance(lab, str) else lab, f"row {i}")
                                   for i, (t, lab) in enumerate(rows, start=1)]
    else:
        _expect_error(lambda: read_text_examples(data_, DataSettings()), name, where, contains)


@READER
@given(texts=st.lists(short_text.map(_nonblank), min_size=1, max_size=5), label_kind=st.sampled_from(["str", "int"]),
       str_labels=st.lists(label_value, min_size=5, max_size=5), int_labels=st.lists(st.integers(-99, 99),
                                                                                     min_size=5, max_size=5),
       index=st.sampled_from(["range", "str", "shuffled", "dup"]),
       fault=st.sampled_from([None, None, "text_nan", "text_blank", "label_none", "label_nan", "label_na",
                              "text_int", "missing_column", "no_rows"]),
       k=st.integers(1, 5))
def test_dataframe_reader_round_trip_and_faults_200_examples(texts, label_kind, str_labels, int_labels, index, fault,
                                                             k):
    """A pandas DataFrame (any index: strings, shuffled, duplicated) reads back exactly with
    'row N (index I)'; NaN / None / pd.NA cells, blank or non-text text, a missing column and zero
    rows raise DataError naming 'DataFrame' and the row."""
    import pandas as pd

    n = len(texts)
    k = min(k, n)
    labels = (str_labels if label_kind == "str" else int_labels)[:n]
    idx = {"range": list(range(n)), "str": [f"r\u00e9{i}" for i in range(n)], "shuffled": list(range(n))[::-1],
           "dup": [7] * n}[index]
    text_col, label_col = list(texts), list(labels)
    contains, where = None, f"row {k} (index {idx[k - 1]})"
    if fault == "text_nan":
        text_col[k - 1], contains = float("nan"), "is empty"
    elif fault == "text_blank":
        text_col[k - 1], contains = " \t\u3000", "is empty"
    elif fault == "label_none":
        label_col[k - 1], contains = None, "is empty"
    elif fault == "label_nan":
        label_col[k - 1], contains = float("nan"), "is empty"
    elif fault == "text_int":
        text_col, where, contains = list(range(n)), f"row 1 (index {idx[0]})", "is not text"
    elif fault in ("missing_column", "no_rows"):
        where, contains = None, {"missing_column": "not found", "no_rows": "no examples found"}[fault]
    frame = {"text": text_col, "label": label_col}
    if fault == "label_na":
        dtype = "string" if label_kind == "str" else "Int64"
        label_col[k - 1] = None
        frame["label"], contains = pd.array(label_col, dtype=dtype), "is empty"
    df = pd.DataFrame(frame, index=idx)
    if fault == "missing_column":
        df = df.rename(columns={"label": "labels"})
    if fault == "no_rows":
        df = df.iloc[:0]
    if fault is None:
        got = read_text_examples(df, DataSettings())
        assert _as_tuples(got) == [(t.strip(), None, lab.strip() if isinstance(lab, str) else lab,
                                    f"row {i} (index {ix})")
                                   for i, (t, lab, ix) in enumerate(zip(texts, labels, idx), start=1)]
        assert [type(e.label) for e in got] == [type(x) for x in labels]
    else:
        _expect_error(lambda: read_text_examples(df, DataSettings()), "DataFrame", where, contains)


@READER
@given(texts=st.lists(small_text, min_size=1, max_size=4), label_kind=st.sampled_from(["class", "str", "int"]),
       names=st.lists(small_text, min_size=2, max_size=4, unique=True),
       ids=st.lists(st.integers(0, 3), min_size=4, max_size=4), str_labels=st.lists(label_value, min_size=4,
                                                                                    max_size=4),
       fault=st.sampled_from([None, None, None, "text_none", "text_blank", "label_none", "missing_column"]),
       k=st.integers(1, 4))
def test_datasets_reader_round_trip_and_faults_200_examples(texts, label_kind, names, ids, str_labels, fault, k):
    """A datasets.Dataset (ClassLabel, string or int labels) reads back exactly with 'row N'
    (ClassLabel ids stay ids, as 0.2 read them, so runs trained on hf: data keep their label names);
    None / blank values and a missing column raise DataError naming 'Dataset' and the row."""
    import datasets

    n = len(texts)
    k = min(k, n)
    if label_kind == "class":
        labels = [i % len(names) for i in ids[:n]]
        feature = datasets.ClassLabel(names=names)
    elif label_kind == "str":
        labels, feature = str_labels[:n], datasets.Value("string")
    else:
        labels, feature = ids[:n], datasets.Value("int64")
    rows = [{"text": t, "label": lab} for t, lab in zip(texts, labels)]
    where, contains = f"row {k}", None
    if fault == "text_none":
        rows[k - 1]["text"], contains = None, "is empty"
    elif fault == "text_blank":
        rows[k - 1]["text"], contains = "\u2028 \x0b", "is empty"
    elif fault == "label_none":
        rows[k - 1]["label"], contains = None, "is empty"
    elif fault == "missing_column":
        where, contains = None, "not found"
    ds = datasets.Dataset.from_list(rows, features=datasets.Features({"text": datasets.Value("string"),
                                                                     "label": feature}))
    s = DataSettings(label_column="labels" if fault == "missing_column" else "label")
    if fault is None:
        got = read_text_examples(ds, s)
        expected_labels = [x.strip() if isinstance(x, str) else x for x in labels]
        assert _as_tuples(got) == [(t.strip(), None, lab, f"row {i}")
                                   for i, (t, lab) in enumerate(zip(texts, expected_labels), start=1)]
    else:
        _expect_error(lambda: read_text_examples(ds, s), "Dataset", where, contains)


# ---------------------------------------------------------------------------------------------
# token-tagged data: tags, CoNLL, JSONL, in memory
# ---------------------------------------------------------------------------------------------

entity_type = st.one_of(st.sampled_from(["PER", "LOC", "ORG", "MISC", "X"]),
                        st.lists(st.one_of(chars, st.sampled_from(SPECIALS)).filter(
                            lambda c: not any(x.isspace() or x == "\ufeff" for x in c)), min_size=1, max_size=4)
                        .map("".join))


@st.composite
def tagged_spans(draw, n_min=1, n_max=8):
    """Entities as (type or None for O, length) pieces covering n words."""
    types = draw(st.lists(entity_type, min_size=1, max_size=3, unique=True))
    pieces, total = [], 0
    target = draw(st.integers(n_min, n_max))
    while total < target:
        length = draw(st.integers(1, min(3, target - total)))
        pieces.append((draw(st.one_of(st.none(), st.sampled_from(types))), length))
        total += length
    return pieces


def encode_scheme(pieces, scheme):
    """IOB2 / IOB1 / BIOES tags for entity pieces (None = O words)."""
    out, prev = [], None
    for kind, length in pieces:
        if kind is None:
            out += ["O"] * length
        elif scheme == "iob2":
            out += ["B-" + kind] + ["I-" + kind] * (length - 1)
        elif scheme == "iob1":
            out += [("B-" if prev == kind else "I-") + kind] + ["I-" + kind] * (length - 1)
        else:  # bioes
            out += ["S-" + kind] if length == 1 else ["B-" + kind] + ["I-" + kind] * (length - 2) + ["E-" + kind]
        prev = kind
    return out


def _iob2_reference(tags):
    """The documented rule: an entity starts at B-, S-, or an I-/E- that does not continue an open
    entity of its type; E- and S- close the entity, O closes it too."""
    out, open_kind = [], None
    for t in tags:
        if t == "O":
            out.append("O")
            open_kind = None
            continue
        prefix, kind = t[0], t[2:]
        out.append(("I-" if prefix in "IE" and open_kind == kind else "B-") + kind)
        open_kind = None if prefix in "ES" else kind
    return out


def _is_iob2(tags):
    prev = "O"
    for t in tags:
        if t != "O" and not (t[:2] in ("B-", "I-") and len(t) > 2):
            return False
        if t.startswith("I-") and prev[2:] != t[2:]:
            return False
        prev = t
    return True


@settings(max_examples=200, deadline=None, database=None)
@given(pieces=tagged_spans(), scheme=st.sampled_from(["iob2", "iob1", "bioes"]),
       noise=st.lists(st.one_of(st.sampled_from(["O", "B-X", "I-X", "E-X", "S-X", "B-Y", "I-Y", "E-Y", "S-Y"]),
                               st.tuples(st.sampled_from(["B-", "I-", "E-", "S-"]), entity_type).map("".join)),
                     max_size=10))
def test_normalise_tags_iob1_bioes_to_iob2_200_examples(pieces, scheme, noise):
    """The same entities written in IOB2, IOB1 or BIOES normalise to the same IOB2 tags; any tag
    sequence normalises by the documented rule (E-/S- close an entity) to valid IOB2 of the same
    length, types and O positions, idempotently."""
    assert normalise_tags(encode_scheme(pieces, scheme)) == encode_scheme(pieces, "iob2")
    arbitrary = noise + encode_scheme(pieces, scheme)
    out = normalise_tags(arbitrary)
    assert out == _iob2_reference(arbitrary)
    assert len(out) == len(arbitrary) and _is_iob2(out)
    assert [t[2:] for t in out] == [t[2:] for t in arbitrary]  # O stays O, types stay
    assert normalise_tags(out) == out


conll_word = st.one_of(
    st.lists(st.one_of(chars, st.sampled_from(SPECIALS)).filter(lambda c: not any(x.isspace() or x == "\ufeff"
                                                                               for x in c)),
             min_size=1, max_size=8).map("".join),
    st.builds(_repeat, st.sampled_from(["a", "\U0001F600", "\u05d0\u05d1", "x\u0301"]), st.integers(1000, 5000)),
).filter(lambda w: not w.startswith("-DOCSTART-"))
conll_extra = st.lists(st.sampled_from(["NNP", "B-NP", "-X-", "\u00e9", "\u0661"]), max_size=2)
col_sep = st.sampled_from([" ", "\t", "  ", " \t "])
SENTENCE_BREAKS = ["", " ", "\t", "\ufeff", "-DOCSTART- -X- -X- O", "-DOCSTART-"]


@st.composite
def conll_spec(draw):
    sentences = []
    for _ in range(draw(st.integers(1, 4))):
        pieces = draw(tagged_spans(1, 6))
        n = sum(length for _, length in pieces)
        words = draw(st.lists(conll_word, min_size=n, max_size=n))
        extras = draw(st.lists(conll_extra, min_size=n, max_size=n))
        seps = draw(st.lists(st.lists(col_sep, min_size=4, max_size=4), min_size=n, max_size=n))
        sentences.append((pieces, words, extras, seps))
    return dict(sentences=sentences, scheme=draw(st.sampled_from(["iob2", "iob1", "bioes"])),
                tag_first=draw(st.booleans()), bom=draw(st.booleans()),
                breaks=draw(st.lists(st.lists(st.sampled_from(SENTENCE_BREAKS), min_size=1, max_size=3),
                                     min_size=5, max_size=5)),
                lead=draw(st.lists(st.booleans(), min_size=5, max_size=5)),
                newlines=draw(st.lists(st.sampled_from(NEWLINES), min_size=60, max_size=60)),
                final_newline=draw(st.booleans()))


def _build_conll(spec, fault=None, k=(0, 0), bad=None):
    """(content, expected [(tokens, tags, where)], line of word k=(sentence, word))."""
    nls = iter(spec["newlines"] * 200)
    content, expected, fault_line = "", [], None
    last_nl = "\n"

    def add_line(text):
        nonlocal content, last_nl
        # an empty line after a lone \r must end with \r too, or the two would merge into one \r\n
        nl = last_nl if (not text and content.endswith("\r")) else next(nls)
        content += text + nl
        last_nl = nl

    for s, (pieces, words, extras, seps) in enumerate(spec["sentences"]):
        if s or spec["lead"][0]:
            for b in spec["breaks"][s]:
                add_line(b)
        tags = encode_scheme(pieces, spec["scheme"])
        first = _breaks(content) + 1
        for w, (word, tag, extra, sep) in enumerate(zip(words, tags, extras, seps)):
            cols = [word, tag] + extra if spec["tag_first"] else [word] + extra + [tag]
            if (s, w) == k:
                fault_line = _breaks(content) + 1
                if fault == "one_column":
                    cols = [word]
                elif fault == "bad_tag":
                    cols = [word, bad] + extra if spec["tag_first"] else [word] + extra + [bad]
            line = cols[0]
            for c, col in enumerate(cols[1:]):
                line += sep[c % 2] + col
            add_line((sep[3] if w % 2 else "") + line + (sep[2] if w % 3 == 0 else ""))
        expected.append(([*words], encode_scheme(pieces, "iob2"), f"lines {first}-{_breaks(content)}"))
    for b in spec["breaks"][4]:
        add_line(b)
    if not spec["final_newline"]:
        content = content.rstrip("\r\n")
    return content, expected, fault_line


def _conll_settings(spec):
    return DataSettings(conll_tag_column=1 if spec["tag_first"] else -1)


@READER
@given(spec=conll_spec(), ext=st.sampled_from([".conll", ".txt", ".bio", ".iob", ""]))
def test_conll_reader_round_trip_200_examples(spec, ext):
    """CoNLL files (space/tab columns, extra columns, tag first or last, -DOCSTART- lines, blank /
    whitespace / BOM-only lines between sentences, a BOM at the start, mixed line endings, long and
    Unicode words, IOB1/IOB2/BIOES tags) read back as every sentence, word and IOB2 tag, with
    their line ranges."""
    content, expected, _ = _build_conll(spec)
    with _folder() as folder:
        path = _write(folder, "ner" + ext, content, spec["bom"])
        got = read_token_examples(str(path), _conll_settings(spec))
    assert [(e.tokens, e.tags, e.where) for e in got] == expected


bad_tag = st.one_of(st.sampled_from(["PERSON", "B-", "b-PER", "X-PER", "B_PER", "o", "0", "BPER", "-", "I-",
                                     "B-PER-", "S-"]),
                    st.lists(st.one_of(chars, st.sampled_from(SPECIALS)).filter(
                        lambda c: not any(x.isspace() or x == "\ufeff" for x in c)), min_size=1, max_size=5)
                    .map("".join)).filter(lambda t: not (t == "O" or (t[:2] in ("B-", "I-", "E-", "S-")
                                                                      and len(t) > 2)))


@READER
@given(spec=conll_spec(), fault=st.sampled_from(["one_column", "bad_tag", "tag_column", "empty", "docstart_only",
                                                 "bad_utf8"]),
       s=st.integers(0, 3), w=st.integers(0, 5), bad=bad_tag, data=st.data())
def test_conll_reader_invalid_lines_raise_data_error_with_line_200_examples(spec, fault, s, w, bad, data):
    """A word without a tag, an invalid tag, a tag column out of range, an empty file, a file of
    -DOCSTART- lines only, non-UTF-8 bytes: DataError naming the file (and the line)."""
    s = min(s, len(spec["sentences"]) - 1)
    w = min(w, len(spec["sentences"][s][1]) - 1)
    content, _, line = _build_conll(spec, fault, (s, w), bad)
    settings_ = _conll_settings(spec)
    where = f"line {line}"
    contains = {"one_column": "expected a token and a tag", "bad_tag": "invalid tag"}.get(fault)
    if fault == "tag_column":
        content, expected, _ = _build_conll(spec)
        settings_ = DataSettings(conll_tag_column=9)
        first_word_line = expected[0][2].split()[1].split("-")[0]
        where, contains = f"line {first_word_line}", "no column 9"
    elif fault == "empty":
        content = data.draw(st.lists(st.sampled_from(WHITESPACE + NEWLINES + ["\ufeff"]), max_size=5).map("".join))
        where, contains = None, None  # "file is empty", or (a lone BOM / \x1c-only line) "no sentences found"
    elif fault == "docstart_only":
        content = data.draw(st.lists(st.sampled_from(SENTENCE_BREAKS), min_size=1, max_size=4).map("\n".join))
        assume(content.strip() and "-DOCSTART-" in content)
        where, contains = None, "no sentences found"
    elif fault == "bad_utf8":
        raw = content.encode("utf-8")
        cut = data.draw(st.integers(0, len(raw)))
        content = raw[:cut] + b"\xff" + raw[cut:]
        where, contains = None, "not UTF-8"
    with _folder() as folder:
        path = _write(folder, "ner.conll", content, spec["bom"] and fault != "bad_utf8")
        _expect_error(lambda: read_token_examples(path, settings_), path, where, contains)


token_word = st.one_of(short_text.map(_nonblank), long_word, st.integers(-999, 999))


@st.composite
def token_rows_spec(draw):
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        pieces = draw(tagged_spans(1, 6))
        n = sum(length for _, length in pieces)
        rows.append((pieces, draw(st.lists(token_word, min_size=n, max_size=n))))
    return dict(rows=rows, scheme=draw(st.sampled_from(["iob2", "iob1", "bioes"])),
                tags_column=draw(st.sampled_from(["tags", "ner_tags"])))


TOKEN_ROW_FAULTS = [None, None, None, "count", "no_tokens", "tokens_str", "blank_word", "word_bool", "tags_missing",
                    "tags_str", "int_tags", "bad_tag", "not_object", "bad_json"]


def _token_row_fault(row, fault, data):
    """Apply a fault to one {"tokens", tags} row; returns (row or raw line, expected message part)."""
    tcol = "ner_tags" if "ner_tags" in row else "tags"
    if fault == "count":
        row[tcol] = row[tcol] + ["O"] if data.draw(st.booleans()) or len(row[tcol]) == 1 else row[tcol][:-1]
        return row, "tokens but"
    if fault == "no_tokens":
        row["tokens"] = data.draw(st.sampled_from([[], None, 3, {"a": 1}]))
        return row, "must be a non-empty list of words"
    if fault == "tokens_str":
        row["tokens"] = " ".join(map(str, row["tokens"]))
        return row, "must be a non-empty list of words"
    if fault == "blank_word":
        row["tokens"][data.draw(st.integers(0, len(row["tokens"]) - 1))] = data.draw(
            st.one_of(blank_value, st.none(), st.just([]), st.just({})))
        return row, "is empty or not text"
    if fault == "word_bool":
        row["tokens"][0] = data.draw(st.booleans())
        return row, "is empty or not text"
    if fault == "tags_missing":
        del row[tcol]
        return row, "must be a list of tags"
    if fault == "tags_str":
        row[tcol] = " ".join(row[tcol])
        return row, "must be a list of tags"
    if fault == "int_tags":
        row[tcol] = [0] * len(row[tcol])
        return row, "integer tags"
    if fault == "bad_tag":
        row[tcol][data.draw(st.integers(0, len(row[tcol]) - 1))] = data.draw(
            st.one_of(bad_tag, st.sampled_from([" O", "O ", "B-PER ", "\tO", None, 1.5, True, ["O"]])))
        return row, "invalid tag"
    raise AssertionError(fault)


@READER
@given(spec=token_rows_spec(), fault=st.sampled_from(TOKEN_ROW_FAULTS), k=st.integers(1, 5),
       newlines=st.lists(st.sampled_from(NEWLINES), min_size=5, max_size=5),
       blanks=st.lists(st.sampled_from(BLANK_LINES + [None, None, None]), min_size=5, max_size=5),
       bom=st.booleans(), ascii_=st.booleans(), data=st.data())
def test_token_jsonl_reader_round_trip_and_faults_200_examples(spec, fault, k, newlines, blanks, bom, ascii_, data):
    """JSONL {"tokens": [...], "tags"|"ner_tags": [...]} rows (Unicode / long / numeric words,
    IOB1/IOB2/BIOES tags, blank lines, mixed line endings, BOM) read back as every word (stripped,
    numbers as text) and its IOB2 tag with 'line N'; count mismatches, empty or non-list tokens,
    blank words, missing or non-list tags, integer tags without names, invalid tags, non-objects
    and invalid JSON raise DataError naming the file and the line."""
    k = min(k, len(spec["rows"]))
    content, lines, contains = "", [], None
    for i, (pieces, words) in enumerate(spec["rows"], start=1):
        if blanks[i - 1] is not None:
            content += blanks[i - 1] + newlines[i - 1]
        lines.append(_breaks(content) + 1)
        row = {"tokens": list(words), spec["tags_column"]: encode_scheme(pieces, spec["scheme"])}
        line = json.dumps(row, ensure_ascii=ascii_)
        if fault is not None and i == k:
            if fault == "not_object":
                line, contains = json.dumps(list(words)), "expected a JSON object"
            elif fault == "bad_json":
                line, contains = line[:-1], "not valid JSON"
            else:
                row, contains = _token_row_fault(row, fault, data)
                line = json.dumps(row, ensure_ascii=ascii_)
        content += line + newlines[i - 1]
    with _folder() as folder:
        path = _write(folder, "ner.jsonl", content, bom)
        if fault is None:
            got = read_token_examples(str(path), DataSettings())
            assert [(e.tokens, e.tags, e.where) for e in got] == [
                ([str(w).strip() for w in words], encode_scheme(pieces, "iob2"), f"line {line}")
                for (pieces, words), line in zip(spec["rows"], lines)]
        else:
            _expect_error(lambda: read_token_examples(str(path), DataSettings()), path, f"line {lines[k - 1]}",
                          contains)


TAG_NAMES = ["O"] + [p + t for t in ("PER", "LOC", "MISC") for p in ("B-", "I-", "E-", "S-")]
IN_MEMORY_TOKEN_FAULTS = [None, None, None, "count", "no_tokens", "blank_word", "int_tags", "bad_tag", "not_dict",
                          "id_out_of_range", "empty"]


@READER
@given(spec=token_rows_spec(), as_dataset=st.booleans(), order=st.permutations(TAG_NAMES),
       fault=st.sampled_from(IN_MEMORY_TOKEN_FAULTS), k=st.integers(1, 5), data=st.data())
def test_token_in_memory_reader_round_trip_and_faults_200_examples(spec, as_dataset, order, fault, k, data):
    """Lists of dicts with tag names, and datasets.Dataset with a ClassLabel tag sequence
    ("ner_tags"; IOB1/IOB2/BIOES names in any order), read back as every word and its IOB2 tag with
    'row N'; faults (tag count, no or blank words, integer tags with no names, ClassLabel id -1,
    invalid tags, non-dict rows, no rows) raise DataError naming the source and the row."""
    import datasets

    k = min(k, len(spec["rows"]))
    names = list(order)
    kinds = ("PER", "LOC", "MISC")
    rows, expected = [], []
    for i, (pieces, words) in enumerate(spec["rows"], start=1):
        pieces = [(None if kind is None else kinds[sum(map(ord, kind)) % 3], n) for kind, n in pieces]
        tags = encode_scheme(pieces, spec["scheme"])
        words = [str(w) for w in words] if as_dataset else list(words)
        rows.append({"tokens": words, "ner_tags": [names.index(t) for t in tags] if as_dataset else tags})
        expected.append(([str(w).strip() for w in words], encode_scheme(pieces, "iob2"), f"row {i}"))
    source, where, contains = ("Dataset" if as_dataset else "data (list)"), f"row {k}", None
    row = rows[k - 1]
    if as_dataset and fault in ("int_tags", "bad_tag", "not_dict"):
        fault = "id_out_of_range"  # an Arrow column holds neither strings among ids nor non-dict rows
    if fault == "count":
        row["ner_tags"] = row["ner_tags"] + row["ner_tags"][:1] if data.draw(st.booleans()) or \
            len(row["ner_tags"]) == 1 else row["ner_tags"][:-1]
        contains = "tokens but"
    elif fault == "no_tokens":
        row["tokens"], contains = [], "must be a non-empty list of words"
    elif fault == "blank_word":
        row["tokens"][data.draw(st.integers(0, len(row["tokens"]) - 1))] = data.draw(
            st.sampled_from([None, "", " \u2028", "\x0b"]))
        contains = "is empty or not text"
    elif fault == "id_out_of_range":
        if as_dataset:
            row["ner_tags"][0], contains = -1, "tag id -1 is outside 0..12"  # ClassLabel stores -1 ("no label")
        else:
            row["ner_tags"][0], contains = 3, "integer tags but the source names no tags"
    elif fault in ("int_tags", "bad_tag", "not_dict"):
        if fault == "not_dict":
            rows[k - 1], contains = data.draw(st.sampled_from([["a"], "a b", None, 1])), "expected a dict"
        else:
            rows[k - 1], contains = _token_row_fault(row, fault, data)
    elif fault == "empty":
        rows, where, contains = [], None, "no sentences found"
    if as_dataset:
        features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                      "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
        source_data = (datasets.Dataset.from_list(rows, features=features) if rows else
                       datasets.Dataset.from_dict({"tokens": [], "ner_tags": []}, features=features))
    else:
        source_data = rows
    if fault is None:
        got = read_token_examples(source_data, DataSettings())
        assert [(e.tokens, e.tags, e.where) for e in got] == expected
    else:
        _expect_error(lambda: read_token_examples(source_data, DataSettings()), source, where, contains)


# ---------------------------------------------------------------------------------------------
# sub-word alignment
# ---------------------------------------------------------------------------------------------


class PieceTokenizer:
    """BPE-ish fake: a word (with its leading space) is len(word) % 3 + 1 pieces, deterministic ids;
    a word made only of '~' gives no pieces at all (the encoder then uses <unk>)."""

    unk_token_id = 0

    def __init__(self, prefix=(1,), suffix=(2,)):
        self.prefix, self.suffix = list(prefix), list(suffix)

    def pieces(self, word):
        if word.strip() and set(word.strip()) == {"~"}:
            return []
        base = sum(map(ord, word)) % 997
        return [10 + (base + 31 * j) % 1000 for j in range(len(word) % 3 + 1)]

    def __call__(self, x, add_special_tokens=True):
        wrap = (lambda ids: self.prefix + ids + self.suffix) if add_special_tokens else (lambda ids: ids)
        if isinstance(x, str):
            return {"input_ids": wrap(self.pieces(x))}
        return {"input_ids": [wrap(self.pieces(w)) for w in x]}


_REAL_TOKENIZER = None


def _real_tokenizer():
    global _REAL_TOKENIZER
    if _REAL_TOKENIZER is None:
        from helpers import make_tokenizer

        _REAL_TOKENIZER = make_tokenizer()
    return _REAL_TOKENIZER


align_word = st.one_of(st.sampled_from(WORDS), st.sampled_from(WORDS).map(str.upper), short_text.map(_nonblank),
                       st.sampled_from(["~", "~~", "a-b", "don't", "e\u0301", "\U0001F600x", "\u200b"]),
                       st.builds(_repeat, st.sampled_from(["ab", "\u00e9"]), st.integers(1000, 2000)))
ALIGN_TAGS = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC"]


@st.composite
def align_examples(draw):
    out = []
    for i in range(draw(st.integers(1, 5))):
        words = draw(st.lists(align_word, min_size=0 if i else 1, max_size=8))
        tags = draw(st.lists(st.sampled_from(ALIGN_TAGS), min_size=len(words), max_size=len(words)))
        out.append(TokenExample(words, tags, f"lines {i}-{i}"))
    return out


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(examples=align_examples(), max_length=st.integers(2, 24),
       tokenizer_kind=st.sampled_from(["pieces", "pieces-bos", "pieces-none", "real"]))
def test_subword_alignment_units_targets_and_truncation_200_examples(examples, max_length, tokenizer_kind):
    """For every example, under each alignment (first/last/mean/all), training or not, with and
    without labels: input ids are the special tokens around the kept words' pieces (<unk> for a
    word with none), len <= max_length, words are kept greedily until the next would not fit; one
    unit per kept word (first: its first piece, last: its last, mean: all its pieces; all while
    training: one unit per piece), unit ids run 0..U-1 in order, one target per unit decoding to
    the word's tag (continuations of B-X / I-X get I-X under 'all' training), n_words counts the
    kept words and the truncated count is the number of sentences that lost words."""
    tok = {"pieces": PieceTokenizer(), "pieces-bos": PieceTokenizer(suffix=()),
           "pieces-none": PieceTokenizer(prefix=(), suffix=()), "real": None}[tokenizer_kind] or _real_tokenizer()
    prefix, suffix = ([], []) if tokenizer_kind == "real" else (tok.prefix, tok.suffix)
    room = max_length - len(prefix) - len(suffix)
    unk = tok.unk_token_id
    # the oracle: each word's pieces on its own (a leading space after the first word)
    subs_of = [[tok((" " if j else "") + w, add_special_tokens=False)["input_ids"] or [unk]
                for j, w in enumerate(e.tokens)] for e in examples]
    for alignment in ("first", "last", "mean", "all"):
        config = RunConfig.from_dict({"model": {"task": "token", "label_alignment": alignment},
                                      "data": {"max_length": max_length}})
        for training in (False, True):
            for with_labels in (False, True):
                labels = build_tag_map(examples, alignment) if with_labels else None
                if room <= 0:  # no word could ever fit: a clear error naming the setting
                    with pytest.raises(ConfigError, match=f"max_length={max_length} leaves no room for words"):
                        encode_token_examples(tok, examples, labels, config, training=training)
                    continue
                encoded, truncated = encode_token_examples(tok, examples, labels, config, training=training)
                _check_alignment(examples, subs_of, encoded, truncated, labels, alignment, training, prefix,
                                 suffix, room, max_length)


def _check_alignment(examples, subs_of, encoded, truncated, labels, alignment, training, prefix, suffix, room,
                     max_length):
    assert len(encoded) == len(examples)
    expected_truncated = 0
    for e, subs, enc in zip(examples, subs_of, encoded):
        kept, used = 0, 0
        while kept < len(subs) and used + len(subs[kept]) <= room:
            used += len(subs[kept])
            kept += 1
        expected_truncated += kept < len(e.tokens)
        assert enc.extra["n_words"] == kept
        assert enc.input_ids == prefix + [i for s in subs[:kept] for i in s] + suffix
        assert len(enc.input_ids) <= max_length
        assert len(enc.units) == len(enc.input_ids)
        per_piece = alignment == "all" and training
        units, want_tags, u = [-1] * len(prefix), [], 0
        for s, tag in zip(subs[:kept], e.tags):
            if per_piece:
                units += list(range(u, u + len(s)))
                want_tags += [tag] + [tag if tag == "O" else "I-" + tag[2:]] * (len(s) - 1)
                u += len(s)
            else:
                units += {"first": [u] + [-1] * (len(s) - 1), "all": [u] + [-1] * (len(s) - 1),
                          "last": [-1] * (len(s) - 1) + [u], "mean": [u] * len(s)}[alignment]
                want_tags.append(tag)
                u += 1
        units += [-1] * len(suffix)
        assert enc.units == units, (alignment, training)
        seen = [x for x in enc.units if x >= 0]
        n_units = len(set(seen))
        assert sorted(set(seen)) == list(range(n_units)) and seen == sorted(seen)
        assert n_units == (used if per_piece else kept)
        if labels is None:
            assert enc.target is None
        else:
            assert len(enc.target) == n_units
            assert [labels.names[t] for t in enc.target] == want_tags, (alignment, training)
    assert truncated == expected_truncated


@settings(max_examples=200, deadline=None, database=None)
@given(examples=align_examples(), alignment=st.sampled_from(["first", "last", "mean", "all"]),
       unseen=st.sampled_from(["B-ORG", "I-ORG", "B-\U0001F600"]), training=st.booleans())
def test_subword_alignment_unknown_tag_names_source_and_example_200_examples(examples, alignment, unseen, training):
    """A tag absent from the label map is a DataError naming the source and the example."""
    labels = build_tag_map(examples, alignment)
    target = next((e for e in examples if e.tokens), None)
    assume(target is not None)
    target.tags[-1] = unseen
    config = RunConfig.from_dict({"model": {"task": "token", "label_alignment": alignment},
                                  "data": {"max_length": 100_000}})
    _expect_error(lambda: encode_token_examples(PieceTokenizer(), examples, labels, config, source="dev.conll",
                                                training=training),
                  "dev.conll", target.where, f"tag {unseen!r} never appears")


READERS = {
    "csv": (".csv", lambda path: read_text_examples(path, DataSettings())),
    "tsv": (".tsv", lambda path: read_text_examples(path, DataSettings())),
    "jsonl": (".jsonl", lambda path: read_text_examples(path, DataSettings())),
    "parquet": (".parquet", lambda path: read_text_examples(path, DataSettings())),
    "label-text": (".txt", lambda path: read_text_examples(path, DataSettings(format="label-text"))),
    "conll": (".conll", lambda path: read_token_examples(path, DataSettings())),
    "token-jsonl": (".jsonl", lambda path: read_token_examples(path, DataSettings())),
}
file_stem = st.lists(st.one_of(st.sampled_from(["a", "Z", "0", "-", "_", " ", "\u00e9", "\U0001F600", "\u05d0",
                                                "\u202e", "\u0301", ",", "'", "(", "#", "%"])),
                     min_size=1, max_size=10).map("".join).filter(lambda n: n.strip(" ") and not n.startswith(" "))


@READER
@given(reader=st.sampled_from(sorted(READERS)), stem=file_stem,
       case=st.sampled_from(["missing", "directory", "unknown_extension", "empty", "garbage_binary"]),
       as_path=st.booleans(), blob=st.binary(min_size=1, max_size=64))
def test_every_reader_names_the_path_for_missing_directory_unknown_or_garbage_files_200_examples(
        reader, stem, case, as_path, blob):
    """For every file reader: a missing file, a directory, an unknown extension, an empty file and
    random bytes give DataError whose message starts with the path (Unicode file names included)."""
    ext, read = READERS[reader]
    with _folder() as folder:
        base = Path(folder) / "sources"
        base.mkdir(exist_ok=True)
        if case == "unknown_extension":
            if reader in ("label-text", "conll"):  # chosen by --format / the default: no extension check
                case = "missing"
            else:
                ext = ".xlsx"
        path = base / (stem + ext)
        if path.is_dir():
            path.rmdir()
        elif path.exists():
            path.unlink()
        if case == "directory":
            path.mkdir()
        elif case in ("empty", "unknown_extension"):
            path.write_bytes(b"")
        elif case == "garbage_binary":
            path.write_bytes(blob)
        try:
            result = read(path if as_path else str(path))
        except DataError as e:
            assert str(e).startswith(f"{path}"), str(e)[:300]
            return
        finally:
            if path.is_dir():
                path.rmdir()
    # only random bytes can be a valid file by chance (e.g. b"x y" is a CoNLL sentence)
    assert case == "garbage_binary" and result


# ---------------------------------------------------------------------------------------------
# bugs the properties found in src/, fixed; one test each (they raised or misread before the fix)
# ---------------------------------------------------------------------------------------------


def test_jsonl_deeply_nested_line_is_a_data_error():
    with _folder() as folder:
        path = _write(folder, "deep.jsonl", '{"text": "a", "label": ' + "[" * 100_000 + "\n")
        _expect_error(lambda: read_text_examples(path, DataSettings()), path, "line 1")


def test_jsonl_integer_over_4300_digits_is_a_data_error():
    with _folder() as folder:
        path = _write(folder, "big.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": ' + "7" * 5000 + "}\n")
        _expect_error(lambda: read_text_examples(path, DataSettings()), path, "line 2")


def test_tag_with_trailing_newline_is_invalid():
    with pytest.raises(DataError, match="invalid tag"):
        read_token_examples([{"tokens": ["a"], "tags": ["O\n"]}], DataSettings())


def test_dataset_classlabel_minus_one_is_a_data_error():
    import datasets

    ds = datasets.Dataset.from_list(
        [{"text": "a", "label": 0}, {"text": "b", "label": -1}],
        features=datasets.Features({"text": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["neg", "pos"])}))
    _expect_error(lambda: read_text_examples(ds, DataSettings()), "Dataset", "row 2")


def test_csv_field_over_128k_chars_round_trips():
    with _folder() as folder:
        path = _write(folder, "long.csv", 'text,label\n"' + "x" * 200_000 + '",1\n')
        assert [e.text for e in read_text_examples(path, DataSettings())] == ["x" * 200_000]



def test_dataframe_with_duplicate_column_names_is_a_data_error():
    import warnings

    import pandas as pd

    df = pd.DataFrame([["a", "1", "2"], ["b", "3", "4"]], columns=["text", "label", "label"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _expect_error(lambda: read_text_examples(df, DataSettings()), "DataFrame")


def test_jsonl_lone_surrogate_in_text_is_a_data_error():
    with _folder() as folder:
        path = _write(folder, "surrogate.jsonl", '{"text": "ok", "label": "x"}\n{"text": "a\\ud800b", "label": "y"}\n')
        _expect_error(lambda: read_text_examples(path, DataSettings()), path, "line 2")


def test_token_encoding_with_more_special_tokens_than_max_length():
    ex = [TokenExample(["a"], ["O"], "line 1")]
    config = RunConfig.from_dict({"model": {"task": "token"}, "data": {"max_length": 2}})
    tok = PieceTokenizer(prefix=(1, 5), suffix=(2,))
    try:
        encoded, _ = encode_token_examples(tok, ex, build_tag_map(ex, "first"), config)
    except (DataError, ConfigError):
        return  # an error naming the setting would be a fix too
    assert len(encoded[0].input_ids) <= 2
