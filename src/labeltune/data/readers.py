"""Read labelled text from CSV, TSV, JSONL, Parquet, one-example-a-line ``LABEL text`` files and
Hugging Face datasets (``hf:ID[,CONFIG]:SPLIT``), with errors that name file, row/line and the fix.

Nothing is dropped silently: an unusable row is an error, never a skipped example.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..config import DataSettings
from ..errors import DataError

__all__ = ["TextExample", "read_text_examples", "read_records", "detect_format"]

_EXT = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet",
        ".conll": "conll", ".bio": "conll", ".iob": "conll"}


@dataclass
class TextExample:
    text: str
    pair: str | None
    label: Any  # raw value from the file (str, int, float, list); None when unlabelled
    where: str  # "row 3 (line 4)" — for error messages


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


def _open_text(path: Path):
    if not path.exists():
        raise DataError(path, None, "file not found", "check the path")
    if path.is_dir():
        raise DataError(path, None, "is a directory, not a data file", "give the file inside it")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(path, f"byte {e.start}", "is not UTF-8 text", "re-save the file as UTF-8") from None
    except OSError as e:
        raise DataError(path, None, f"cannot read file ({e.strerror})", "check permissions and the path") from None
    if not text.strip():
        raise DataError(path, None, "file is empty (no examples)", "give a file with at least one example")
    return text


def _rows_delimited(path: Path, delimiter: str) -> Iterator[tuple[dict, str]]:
    text = _open_text(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
        if len(set(header)) != len(header) or not all(header):
            raise DataError(path, "line 1", f"header {header} has empty or repeated column names",
                            "give every column a unique name in the first line")
        for i, fields in enumerate(reader, start=1):
            line = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                raise DataError(path, f"line {line}", "blank line inside the data", "remove the blank line")
            if len(fields) != len(header):
                raise DataError(path, f"row {i} (line {line})",
                                f"expected {len(header)} fields ({', '.join(header)}), found {len(fields)}",
                                "quote fields that contain the delimiter, or fix the row")
            yield dict(zip(header, fields)), f"row {i} (line {line})"
    except csv.Error as e:
        raise DataError(path, f"line {reader.line_num}", f"malformed {'TSV' if delimiter == chr(9) else 'CSV'} ({e})",
                        "close the quote on this line (double a quote inside a quoted field)") from None


def _rows_jsonl(path: Path) -> Iterator[tuple[dict, str]]:
    for line_no, line in enumerate(_open_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"line {line_no}", f"not valid JSON ({e.msg} at column {e.colno})",
                            "write one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(path, f"line {line_no}", f"expected a JSON object, found {type(row).__name__}",
                            'write one object per line, e.g. {"text": "...", "label": "..."}')
        yield row, f"line {line_no}"


def _rows_parquet(path: Path) -> Iterator[tuple[dict, str]]:
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(path, None, "file not found", "check the path")
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(path, None, f"cannot read Parquet ({e})", "check that the file is a valid Parquet file") from None
    if table.num_rows == 0:
        raise DataError(path, None, "file is empty (no examples)", "give a file with at least one example")
    for i, row in enumerate(table.to_pylist(), start=1):
        yield row, f"row {i}"


def _rows_label_text(path: Path, text_column: str, label_column: str) -> Iterator[tuple[dict, str]]:
    """``LABEL text`` a line (SST-5, TREC): the label is everything before the first whitespace."""
    for line_no, line in enumerate(_open_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            raise DataError(path, f"line {line_no}", "expected 'LABEL text', found only one field",
                            "put the label, a space, then the text")
        yield {label_column: parts[0], text_column: parts[1]}, f"line {line_no}"


def _rows_hf(source: str) -> Iterator[tuple[dict, str]]:
    spec = source[3:]
    name, _, split = spec.rpartition(":")
    if not name:
        raise DataError(source, None, "no split given", "write hf:ID[,CONFIG]:SPLIT, e.g. hf:stanfordnlp/sst2:train")
    name, _, config = name.partition(",")
    import datasets

    try:
        ds = datasets.load_dataset(name, config or None, split=split)
    except Exception as e:  # network, missing dataset or split
        raise DataError(source, None, f"cannot load the dataset ({type(e).__name__}: {e})",
                        "check the id, config and split (hub ids need network access)") from None
    for i, row in enumerate(ds, start=1):
        yield row, f"row {i}"


def read_records(source: str | Path, settings: DataSettings) -> Iterator[tuple[dict, str]]:
    """Yield ``(row dict, location)`` for tabular sources."""
    source = str(source)
    fmt = detect_format(source, settings.format)
    path = Path(source)
    if fmt == "csv":
        return _rows_delimited(path, ",")
    if fmt == "tsv":
        return _rows_delimited(path, "\t")
    if fmt == "jsonl":
        return _rows_jsonl(path)
    if fmt == "parquet":
        return _rows_parquet(path)
    if fmt == "label-text":
        return _rows_label_text(path, settings.text_column, settings.label_column)
    if fmt == "hf":
        return _rows_hf(source)
    raise DataError(source, None, f"format {fmt!r} holds token-tagged data, not text + label",
                    "use --task token for CoNLL files, or give a csv/tsv/jsonl/parquet file")


def _clean_label(value, settings: DataSettings):
    if isinstance(value, str):
        value = value.strip()
        if settings.label_delimiter:
            value = value.split(settings.label_delimiter, 1)[0]
    return value


def read_text_examples(source: str | Path, settings: DataSettings, require_labels: bool = True) -> list[TextExample]:
    """Read every example of ``source``; raise DataError on the first unusable one."""
    examples: list[TextExample] = []
    wanted = [settings.text_column] + ([settings.text_pair_column] if settings.text_pair_column else [])
    checked = False
    for row, where in read_records(source, settings):
        if not checked:
            columns = list(row)
            for col, flag in [(c, "--text-column" if i == 0 else "--text-pair-column") for i, c in enumerate(wanted)] + (
                [(settings.label_column, "--label-column")] if require_labels else []
            ):
                if col not in row:
                    raise DataError(source, None, f"column {col!r} not found; the columns are: {', '.join(map(str, columns))}",
                                    f"pass {flag} with one of them")
            checked = True
        texts = []
        for col in wanted:
            value = row.get(col)
            if not isinstance(value, str) or not value.strip():
                raise DataError(source, where, f"text in column {col!r} is empty", "fill it in or remove the row")
            texts.append(value.strip())
        label = None
        if require_labels:
            label = _clean_label(row.get(settings.label_column), settings)
            if label is None or (isinstance(label, str) and not label):
                raise DataError(source, where, f"label in column {settings.label_column!r} is empty",
                                "give every row a label (or use predict for unlabelled text)")
        examples.append(TextExample(texts[0], texts[1] if len(texts) > 1 else None, label, where))
    if not examples:
        raise DataError(source, None, "no examples found", "give a file with at least one example")
    return examples
