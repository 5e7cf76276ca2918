"""Token-tagged data: CoNLL-style files, JSONL / Hugging Face / in-memory rows of words and tags.
I/O only: tags are checked and normalised to IOB2 (IOB1 and BIOES accepted), so every later step
speaks one scheme.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..config import DataSettings
from ..errors import DataError
from .examples import TokenExample
from .readers import (Records, check_unicode, decoded, in_memory_records, is_in_memory, open_lazily, rows_hf, rows_jsonl,
                      source_name)

__all__ = ["TokenExample", "read_token_examples", "iter_token_examples", "normalise_tags", "token_format",
           "conll_line"]

_TAG = re.compile(r"^(O|[BIES]-\S+)$")
TOKEN_FORMATS = ("conll", "jsonl", "hf")


def normalise_tags(tags: Sequence[str], source: str = "data", where: str | None = None,
                   lines: Sequence[int] | None = None) -> list[str]:
    """IOB1 / IOB2 / BIOES -> IOB2. An entity starts at B-, S-, or an I-/E- that does not continue
    the previous tag's type."""
    out, prev = [], "O"
    for k, tag in enumerate(tags):
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            at = f"line {lines[k]}" if lines else where
            raise DataError(source, at, f"invalid tag {tag!r}", "use O or B-/I-/E-/S- followed by a type, e.g. B-PER")
        if tag == "O":
            out.append("O")
        else:
            prefix, kind = tag[0], tag[2:]
            continues = prev != "O" and prev[2:] == kind and prefix in "IE"
            out.append(("I-" if continues else "B-") + kind)
        prev = out[-1] if tag[0] not in "ES" else "O"  # E-/S- close the entity
    return out


def token_format(source: str, fmt: str = "auto") -> str:
    """conll | jsonl | hf for a token-task source; CSV/TSV/Parquet/label-text hold text + label."""
    if fmt == "auto":
        if source.startswith("hf:"):
            return "hf"
        ext = Path(source).suffix.lower()
        if ext in (".jsonl", ".json"):
            return "jsonl"
        if ext in (".csv", ".tsv", ".parquet"):
            raise DataError(source, None, f"the token task cannot read {ext} files (a text and a label per row)",
                            "give a CoNLL file (a 'word tag' line per word, blank lines between sentences), JSONL "
                            "with tokens and tags lists, or hf:ID:SPLIT; or use --task sequence")
        return "conll"  # CoNLL files come as .conll, .txt, .bio, .iob, .train or no extension
    if fmt not in TOKEN_FORMATS:
        raise DataError(source, None, f"--format {fmt} holds a text and a label per row, not tagged words",
                        f"use --format {', '.join(TOKEN_FORMATS)} with --task token")
    return fmt


def conll_line(raw: str) -> str:
    """A CoNLL line as the reader sees it: byte-order marks (glued to tokens or alone on a line) and
    surrounding whitespace gone. Empty: a sentence break (a line of only spaces or tabs is one too --
    WNUT-17's training file separates 2,394 of its 3,394 sentences so). The bench's subsets split
    files with it, so they cut sentences where the reader does."""
    return raw.replace("\ufeff", "").strip()


def _read_conll(path: Path, settings: DataSettings, require_labels: bool) -> Iterator[TokenExample]:
    """Sentences as the file is read (blank lines between them; -DOCSTART- lines start documents)."""
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    document: int | None = None  # counts -DOCSTART- lines; sentences before the first stand alone
    content = False

    def sentence() -> TokenExample:
        where = f"lines {lines[0]}-{lines[-1]}"
        norm = normalise_tags(tags, str(path), lines=lines) if require_labels else None
        example = TokenExample(list(tokens), norm, where, document=document)
        tokens.clear(), tags.clear(), lines.clear()
        return example

    with open_lazily(path) as f:
        for line_no, raw in enumerate(decoded(f, path), start=1):
            content = content or bool(raw.strip())
            line = conll_line(raw)
            if not line or line.startswith("-DOCSTART-"):
                if tokens:
                    yield sentence()
                if line:
                    document = 0 if document is None else document + 1
                continue
            cols = line.split()
            if require_labels:
                if len(cols) < 2:
                    raise DataError(path, f"line {line_no}", f"expected a token and a tag, found {len(cols)} column",
                                    "write 'token tag' (space or tab separated), blank lines between sentences")
                try:
                    tag = cols[settings.conll_tag_column]
                except IndexError:
                    raise DataError(path, f"line {line_no}", f"no column {settings.conll_tag_column} (found {len(cols)})",
                                    "set --conll-tag-column to the tag column's index") from None
                tags.append(tag)
            tokens.append(cols[0])
            lines.append(line_no)
    if tokens:
        yield sentence()
    if not content:
        raise DataError(path, None, "file is empty (no examples)", "give a file with at least one example")


def _tag_column(row: dict, settings: DataSettings) -> str:
    """``tags_column``; a source without it but with ``ner_tags`` (the Hugging Face convention) uses
    that, as long as ``tags_column`` is left at its default."""
    if settings.tags_column not in row and settings.tags_column == "tags" and "ner_tags" in row:
        return "ner_tags"
    return settings.tags_column


def _read_token_rows(records: Records, settings: DataSettings, require_labels: bool) -> Iterator[TokenExample]:
    name = records.name
    for row, where in records.rows:
        toks = row.get(settings.tokens_column)
        if not isinstance(toks, (list, tuple)) or not toks:
            raise DataError(name, where, f"{settings.tokens_column!r} must be a non-empty list of words "
                            f"(keys present: {', '.join(map(str, row))})",
                            'write {"tokens": [...], "tags": [...]} (or set --tokens-column)')
        bad = [w for w in toks if isinstance(w, bool) or not isinstance(w, (str, int, float)) or not str(w).strip()]
        if bad:
            raise DataError(name, where, f"word {bad[0]!r} is empty or not text",
                            "give each word as a non-empty string")
        for word in toks:
            if isinstance(word, str):
                check_unicode(word, name, where, "a word")
        tags = None
        if require_labels:
            column = _tag_column(row, settings)
            tags = row.get(column)
            if not isinstance(tags, (list, tuple)):
                raise DataError(name, where, f"{column!r} must be a list of tags (keys present: "
                                f"{', '.join(map(str, row))})", "add the tags list (or set --tags-column)")
            if len(tags) != len(toks):
                raise DataError(name, where, f"{len(toks)} tokens but {len(tags)} tags", "give exactly one tag per token")
            names = records.class_names.get(column)
            if any(isinstance(t, int) and not isinstance(t, bool) for t in tags):
                if names is None:
                    raise DataError(name, where, f"{column!r} holds integer tags but the source names no tags",
                                    "write the tag names (e.g. B-PER), or pass a datasets.Dataset whose tags "
                                    "column is a ClassLabel sequence")
                out_of_range = [t for t in tags if isinstance(t, int) and not 0 <= t < len(names)]
                if out_of_range:
                    raise DataError(name, where, f"tag id {out_of_range[0]} is outside 0..{len(names) - 1}",
                                    f"use ids of {column!r}'s names")
                tags = [names[t] if isinstance(t, int) else t for t in tags]
            tags = normalise_tags(list(tags), name, where)
        document = row.get(settings.document_column) if settings.long_documents == "window" else None
        if isinstance(document, float) and document.is_integer():  # an integer column with gaps (pandas)
            document = int(document)
        if document is not None and not (isinstance(document, float) and document != document):  # NaN: none
            if isinstance(document, bool) or not isinstance(document, (str, int)):
                raise DataError(name, where, f"{settings.document_column!r} is {document!r}; it names the sentence's "
                                "document", "give a string or an integer (the same for a document's consecutive "
                                "sentences)")
        else:
            document = None
        yield TokenExample([str(w).strip() for w in toks], tags, where, document=document)


def read_token_examples(source: Any, settings: DataSettings, require_labels: bool = True) -> list[TokenExample]:
    """Sentences of words (and IOB2 tags) from a CoNLL file, JSONL, ``hf:ID:SPLIT`` or data in memory."""
    return list(iter_token_examples(source, settings, require_labels))


def iter_token_examples(source: Any, settings: DataSettings, require_labels: bool = True) -> Iterator[TokenExample]:
    """The sentences of ``source`` one by one, as the file is read (CoNLL and JSONL stream); DataError
    on the first unusable one, and for a source with none."""
    if is_in_memory(source):
        examples = _read_token_rows(in_memory_records(source), settings, require_labels)
    else:
        source = str(source)
        fmt = token_format(source, settings.format)
        if fmt == "conll":
            examples = _read_conll(Path(source), settings, require_labels)
        else:
            records = rows_hf(source) if fmt == "hf" else Records(source, rows_jsonl(Path(source)))
            examples = _read_token_rows(records, settings, require_labels)
    count = 0
    for example in examples:
        count += 1
        yield example
    if not count:
        raise DataError(source_name(source), None, "no sentences found",
                        "give at least one sentence (token tag lines)")
