"""Read rows from files (CSV, TSV, JSONL, Parquet, one-example-a-line ``LABEL text``), Hugging Face
datasets (``hf:ID[,CONFIG]:SPLIT``) and data in memory (a list of dicts, a pandas DataFrame, a
``datasets.Dataset``), with errors that name the source, the row or line, and the fix.

Nothing is dropped silently: an unusable row is an error, never a skipped example.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from ..config import DataSettings
from ..errors import DataError
from .examples import TextExample

__all__ = ["TextExample", "Records", "read_text_examples", "read_records", "detect_format", "open_text",
           "rows_jsonl", "rows_hf", "in_memory_records", "is_in_memory", "source_name", "split_lines", "check_unicode"]

_EXT = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet",
        ".conll": "conll", ".bio": "conll", ".iob": "conll"}


@dataclass
class Records:
    """Rows of one source: ``(row dict, location)`` pairs, the source's name for messages, and the
    names of ``datasets.ClassLabel`` columns (integer labels -> names)."""

    name: str
    rows: Iterable[tuple[dict, str]]
    class_names: dict[str, list[str]] = field(default_factory=dict)


def is_in_memory(source: Any) -> bool:
    return not isinstance(source, (str, Path))


def source_name(source: Any) -> str:
    """How messages name a source: its path, or the kind of in-memory data."""
    if not is_in_memory(source):
        return str(source)
    if _is_dataframe(source):
        return "DataFrame"
    if _is_dataset(source):
        return "Dataset"
    return "data (list)"


def detect_format(source: str, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    if source.startswith("hf:"):
        return "hf"
    ext = Path(source).suffix.lower()
    if ext in _EXT:
        return _EXT[ext]
    raise DataError(source, None, f"cannot tell the format from the extension {ext or '(none)'!r}",
                    "rename the file to .csv/.tsv/.jsonl/.parquet/.conll or pass --format "
                    "(csv, tsv, jsonl, parquet, label-text, conll)")


def open_text(path: Path) -> str:
    """The whole file as text (UTF-8, a byte-order mark dropped), or a DataError saying why not."""
    if not path.exists():
        raise DataError(path, None, "file not found", "check the path")
    if path.is_dir():
        raise DataError(path, None, "is a directory, not a data file", "give the file inside it")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # newline="": \r\n inside a quoted CSV field stays
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(path, f"byte {e.start}", "is not UTF-8 text", "re-save the file as UTF-8") from None
    except OSError as e:
        raise DataError(path, None, f"cannot read file ({e.strerror})", "check permissions and the path") from None
    if not text.strip():
        raise DataError(path, None, "file is empty (no examples)", "give a file with at least one example")
    return text


def split_lines(text: str) -> list[str]:
    """Lines split on \\n, \\r\\n or a lone \\r only (str.splitlines also splits on \\x0b, \\x1c, \\u2028 …,
    which may sit inside a text)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def open_lazily(path: Path) -> IO[str]:
    """The file opened for reading line by line (UTF-8, a byte-order mark dropped; newline="": the
    readers split records themselves), or a DataError saying why not. Decoding errors surface while
    reading: ``decoded`` turns them into DataErrors."""
    if not path.exists():
        raise DataError(path, None, "file not found", "check the path")
    if path.is_dir():
        raise DataError(path, None, "is a directory, not a data file", "give the file inside it")
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise DataError(path, None, f"cannot read file ({e.strerror})", "check permissions and the path") from None


def decoded(f: IO[str], path: Path) -> Iterator[str]:
    """The lines of ``f`` (ends kept), with a DataError naming the line where the bytes are not UTF-8."""
    try:
        yield from f
    except UnicodeDecodeError:
        # the text layer decodes ahead in blocks: find the line that holds the bad bytes
        raise DataError(path, f"line {_undecodable_line(path)}", "is not UTF-8 text",
                        "re-save the file as UTF-8") from None


def _undecodable_line(path: Path) -> int:
    """The number of the first line (split as ``split_lines`` does: \n, \r\n or a lone \r) whose bytes
    are not UTF-8; read line by line in binary, so memory stays bounded."""
    line_no = 1
    with open(path, "rb") as f:
        for raw in f:  # split on \n only; lone \r breaks counted inside
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return line_no + raw[: e.start].count(b"\r")
            line_no += 1 + raw.count(b"\r") - raw.endswith(b"\r\n")
    return line_no


def _blank(fields: list[str]) -> bool:
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _rows_delimited(path: Path, delimiter: str) -> Iterator[tuple[dict, str]]:
    """Rows read as the file is read (memory bounded by the longest row, whatever the file's size).
    Blank lines at the very end are no rows; one before more data is an error."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    kind = "TSV" if delimiter == "\t" else "CSV"
    size = path.stat().st_size if path.is_file() else 0
    if size > csv.field_size_limit():  # a field may be as long as the file (the limit only ever grows)
        csv.field_size_limit(size)
    with open_lazily(path) as f:
        reader = csv.reader(decoded(f, path), delimiter=delimiter, quoting=quoting, strict=True)
        try:
            header = next(reader, None)
            if header is not None and not "".join(header).strip() and all(
                    not "".join(r).strip() for r in reader):  # only whitespace in the whole file
                header = None
            if header is None or _blank(header):
                if next((r for r in reader if not _blank(r)), None) is None:
                    raise DataError(path, None, "file is empty (no examples)", "give a file with at least one example")
                raise DataError(path, "line 1", "the first line (the header) is blank",
                                "put the column names in the first line")
            header = [h.strip() for h in header]
            if len(set(header)) != len(header) or not all(header):
                raise DataError(path, "line 1", f"header {header} has empty or repeated column names",
                                "give every column a unique name in the first line")
            blank_at = None  # the line of a blank line seen, an error only if data follow it
            i = 0
            for fields in reader:
                line = reader.line_num
                if _blank(fields):
                    blank_at = blank_at or line
                    continue
                if blank_at is not None:
                    raise DataError(path, f"line {blank_at}", "blank line inside the data", "remove the blank line")
                i += 1
                if len(fields) != len(header):
                    raise DataError(path, f"row {i} (line {line})",
                                    f"expected {len(header)} fields ({', '.join(header)}), found {len(fields)}",
                                    "quote fields that contain the delimiter, or fix the row")
                yield dict(zip(header, fields)), f"row {i} (line {line})"
        except csv.Error as e:
            raise DataError(path, f"line {reader.line_num}", f"malformed {kind} ({e})",
                            "close the quote on this line (double a quote inside a quoted field)") from None


def rows_jsonl(path: Path) -> Iterator[tuple[dict, str]]:
    """One JSON object per line, read as the file is read."""
    seen = False
    with open_lazily(path) as f:
        for line_no, line in enumerate(decoded(f, path), start=1):
            if not line.strip():
                continue
            seen = True
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"line {line_no}", f"not valid JSON ({e.msg} at column {e.colno})",
                                "write one JSON object per line") from None
            except (RecursionError, ValueError) as e:  # nesting too deep; an integer of over 4,300 digits
                raise DataError(path, f"line {line_no}", f"JSON this parser cannot read ({type(e).__name__}: "
                                f"{str(e)[:80]})", "write one flat JSON object per line") from None
            if not isinstance(row, dict):
                raise DataError(path, f"line {line_no}", f"expected a JSON object, found {type(row).__name__}",
                                'write one object per line, e.g. {"text": "...", "label": "..."}')
            yield row, f"line {line_no}"
    if not seen:
        raise DataError(path, None, "file is empty (no examples)", "give a file with at least one example")


def _rows_parquet(path: Path) -> Iterator[tuple[dict, str]]:
    """Rows in record batches of 1,024 (memory bounded by a batch, whatever the file's size)."""
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(path, None, "file not found", "check the path")
    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(path, None, f"cannot read Parquet ({e})", "check that the file is a valid Parquet file") from None
    if parquet.metadata.num_rows == 0:
        raise DataError(path, None, "file is empty (no examples)", "give a file with at least one example")
    i = 0
    try:
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                i += 1
                yield row, f"row {i}"
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 (a corrupt row group)
        raise DataError(path, f"after row {i}", f"cannot read Parquet ({e})", "check that the file is valid") from None


def _rows_label_text(path: Path, text_column: str, label_column: str) -> Iterator[tuple[dict, str]]:
    """``LABEL text`` a line (SST-5, TREC): the label is everything before the first whitespace."""
    for line_no, line in enumerate(split_lines(open_text(path)), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            raise DataError(path, f"line {line_no}", "expected 'LABEL text', found only one field",
                            "put the label, a space, then the text")
        yield {label_column: parts[0], text_column: parts[1]}, f"line {line_no}"


def _class_names(features) -> dict[str, list[str]]:
    """{column: names} for ClassLabel columns and sequences of ClassLabel (NER tags)."""
    out = {}
    for column, feature in (features or {}).items():
        inner = getattr(feature, "feature", feature)  # Sequence(ClassLabel) / List(ClassLabel)
        if hasattr(inner, "names") and hasattr(inner, "int2str"):
            out[column] = list(inner.names)
    return out


def rows_hf(source: str) -> Records:
    """``hf:ID[,CONFIG]:SPLIT`` through ``datasets.load_dataset`` (hub ids need network access)."""
    spec = source[3:]
    name, _, split = spec.rpartition(":")
    if not name or not split:
        raise DataError(source, None, "no split given", "write hf:ID[,CONFIG]:SPLIT, e.g. hf:stanfordnlp/sst2:train")
    name, _, config = name.partition(",")
    import datasets

    try:
        ds = datasets.load_dataset(name, config or None, split=split)
    except Exception as e:  # network, missing dataset or split
        raise DataError(source, None, f"cannot load the dataset ({type(e).__name__}: {e})",
                        "check the id, config and split (hub ids need network access)") from None
    return Records(source, ((row, f"row {i}") for i, row in enumerate(ds, start=1)), _class_names(ds.features))


def _is_dataframe(obj) -> bool:
    return type(obj).__module__.startswith("pandas") and hasattr(obj, "to_dict") and hasattr(obj, "columns")


def _is_dataset(obj) -> bool:
    return type(obj).__module__.startswith("datasets") and hasattr(obj, "features") and hasattr(obj, "column_names")


def _missing(value) -> bool:
    """None, or a float NaN (pandas' marker for a missing cell)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def in_memory_records(data: Any) -> Records:
    """A list (or tuple) of dicts, a pandas DataFrame or a ``datasets.Dataset`` as rows."""
    name = source_name(data)
    if _is_dataframe(data):
        if not data.columns.is_unique:
            repeated = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
            raise DataError(name, None, f"columns {repeated} appear more than once", "give every column a unique name")
        records = data.to_dict("records")
        index = list(data.index)
        rows = [({k: (None if _missing(v) else v) for k, v in r.items()}, f"row {i + 1} (index {index[i]})")
                for i, r in enumerate(records)]
        return Records(name, rows)
    if _is_dataset(data):
        return Records(name, ((row, f"row {i}") for i, row in enumerate(data, start=1)), _class_names(data.features))
    if isinstance(data, dict):
        raise DataError(name, None, "got one dict, not a list of them", "pass a list of dicts, one per example")
    if isinstance(data, (list, tuple)):
        rows = []
        for i, row in enumerate(data, start=1):
            if not isinstance(row, dict):
                raise DataError(name, f"row {i}", f"expected a dict, found {type(row).__name__}",
                                'give one dict per example, e.g. {"text": "...", "label": "..."}')
            rows.append((row, f"row {i}"))
        return Records(name, rows)
    raise DataError(name, None, f"cannot read data of type {type(data).__name__}",
                    "give a file path, a list of dicts, a pandas DataFrame or a datasets.Dataset")


def read_records(source: Any, settings: DataSettings) -> Records:
    """The rows of a tabular source: a path (by extension or ``settings.format``), ``hf:`` or data in memory."""
    if is_in_memory(source):
        return in_memory_records(source)
    source = str(source)
    fmt = detect_format(source, settings.format)
    path = Path(source)
    if fmt in ("csv", "tsv"):
        return Records(source, _rows_delimited(path, "," if fmt == "csv" else "\t"))
    if fmt == "jsonl":
        return Records(source, rows_jsonl(path))
    if fmt == "parquet":
        return Records(source, _rows_parquet(path))
    if fmt == "label-text":
        return Records(source, _rows_label_text(path, settings.text_column, settings.label_column))
    if fmt == "hf":
        return rows_hf(source)
    raise DataError(source, None, f"format {fmt!r} holds token-tagged data, not text + label",
                    "use --task token for CoNLL files, or give a csv/tsv/jsonl/parquet file")


def check_unicode(value: str, source: str, where: str, what: str) -> None:
    """A DataError for text that is not valid Unicode (a lone surrogate from a JSON escape like \\ud800),
    which no tokenizer accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataError(source, where, f"{what} holds {value[e.start]!r}, half of a surrogate pair (not Unicode)",
                        "remove it or write the whole character") from None


def _clean_label(value, settings: DataSettings, names: list[str] | None, source: str, where: str):
    # datasets.ClassLabel ids stay ids (label "1", as 0.2 read them: runs trained on hf: data keep working);
    # -1, the datasets marker for "no label" (e.g. a test split), is an error, not a class
    if names is not None and isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < len(names):
        raise DataError(source, where, f"label id {value} is not one of the {len(names)} class ids",
                        "give every row a label (or use predict for unlabelled data)")
    if isinstance(value, str):
        value = value.strip()
        if settings.label_delimiter:
            value = value.split(settings.label_delimiter, 1)[0]
    return value


def read_text_examples(source: Any, settings: DataSettings, require_labels: bool = True) -> list[TextExample]:
    """Read every example of ``source``; raise DataError on the first unusable one."""
    return list(iter_text_examples(source, settings, require_labels))


def iter_text_examples(source: Any, settings: DataSettings, require_labels: bool = True) -> Iterator[TextExample]:
    """The examples of ``source`` one by one, as the file is read (CSV/TSV/JSONL/Parquet stream);
    DataError on the first unusable one, and for a source with none."""
    records = read_records(source, settings)
    name = records.name
    count = 0
    wanted = [settings.text_column] + ([settings.text_pair_column] if settings.text_pair_column else [])
    label_names = records.class_names.get(settings.label_column)
    checked = False
    for row, where in records.rows:
        if not checked:
            columns = list(row)
            for col, flag in [(c, "--text-column" if i == 0 else "--text-pair-column") for i, c in enumerate(wanted)] + (
                [(settings.label_column, "--label-column")] if require_labels else []
            ):
                if col not in row:
                    raise DataError(name, None, f"column {col!r} not found; the columns are: {', '.join(map(str, columns))}",
                                    f"pass {flag} with one of them")
            checked = True
        texts = []
        for col in wanted:
            value = row.get(col)
            if not isinstance(value, str) or not value.strip():
                problem = "is empty" if _missing(value) or isinstance(value, str) else f"is not text ({value!r})"
                raise DataError(name, where, f"text in column {col!r} {problem}", "fill it in or remove the row")
            check_unicode(value, name, where, f"text in column {col!r}")
            texts.append(value.strip())
        label = None
        if require_labels:
            label = _clean_label(row.get(settings.label_column), settings, label_names, name, where)
            if _missing(label) or (isinstance(label, str) and not label):
                raise DataError(name, where, f"label in column {settings.label_column!r} is empty",
                                "give every row a label (or use predict for unlabelled text)")
        count += 1
        yield TextExample(texts[0], texts[1] if len(texts) > 1 else None, label, where)
    if not count:
        raise DataError(name, None, "no examples found", "give a file with at least one example")
