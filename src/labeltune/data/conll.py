"""Token classification data: CoNLL-style and JSONL readers, tag-scheme normalisation, sub-word
alignment, entity metrics (seqeval) and word/entity-span predictions.

Tags are normalised to IOB2 on reading (IOB1 and BIOES accepted), so metrics and predictions speak one
scheme. Alignment settings (which sub-words carry a word's label):
    first / last: the first / last sub-word of each word      (one unit a word)
    mean:         all sub-words of a word, states averaged      (one unit a word)
    all:          every sub-word while training; continuations of B-X/I-X get I-X
                  (evaluation and prediction read the first sub-word)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config import DataSettings, RunConfig
from ..errors import DataError
from .batching import Encoded
from .labels import LabelMap
from .readers import _open_text, _rows_hf, _rows_jsonl, detect_format

__all__ = ["TokenExample", "read_token_examples", "normalise_tags", "build_tag_map", "encode_token_examples",
           "evaluate_token_examples", "predict_token_examples", "examples_from_raw_text", "entity_spans",
           "token_metrics"]

_TAG = re.compile(r"^(O|[BIES]-\S+)$")


@dataclass
class TokenExample:
    tokens: list[str]
    tags: list[str] | None
    where: str
    offsets: list[tuple[int, int]] | None = None  # character spans in ``text`` (raw-text input)
    text: str | None = None


def normalise_tags(tags: Sequence[str], source: str = "data", where: str | None = None,
                   lines: Sequence[int] | None = None) -> list[str]:
    """IOB1 / IOB2 / BIOES -> IOB2. An entity starts at B-, S-, or an I-/E- that does not continue
    the previous tag's type."""
    out, prev = [], "O"
    for k, tag in enumerate(tags):
        if not _TAG.match(tag):
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


def _read_conll(path: Path, settings: DataSettings, require_labels: bool) -> list[TokenExample]:
    text = _open_text(path)
    examples: list[TokenExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []

    def flush():
        if tokens:
            where = f"lines {lines[0]}-{lines[-1]}"
            norm = normalise_tags(tags, str(path), lines=lines) if require_labels else None
            examples.append(TokenExample(list(tokens), norm, where))
        tokens.clear(), tags.clear(), lines.clear()

    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.replace("\ufeff", "").strip()  # byte-order marks glued to tokens or alone on a line
        if not line:
            flush()
            continue
        if line.startswith("-DOCSTART-"):
            flush()
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
    flush()
    return examples


def _read_token_rows(source: str, settings: DataSettings, require_labels: bool, fmt: str) -> list[TokenExample]:
    rows = _rows_hf(source) if fmt == "hf" else _rows_jsonl(Path(source))
    examples, tag_names = [], None
    for row, where in rows:
        toks = row.get(settings.tokens_column)
        if not isinstance(toks, list) or not toks:
            raise DataError(source, where, f"{settings.tokens_column!r} must be a non-empty list of words "
                            f"(keys present: {', '.join(row)})", "write {\"tokens\": [...], \"tags\": [...]}")
        tags = None
        if require_labels:
            tags = row.get(settings.tags_column, row.get("ner_tags"))
            if not isinstance(tags, list):
                raise DataError(source, where, f"{settings.tags_column!r} must be a list of tags", "add the tags list")
            if len(tags) != len(toks):
                raise DataError(source, where, f"{len(toks)} tokens but {len(tags)} tags",
                                "give exactly one tag per token")
            if tags and isinstance(tags[0], int):  # HF datasets: ClassLabel ids
                if tag_names is None:
                    import datasets

                    feat = datasets.load_dataset_builder(source[3:].rpartition(":")[0].partition(",")[0]).info.features
                    tag_names = feat["ner_tags"].feature.names
                tags = [tag_names[t] for t in tags]
            tags = normalise_tags([str(t) for t in tags], source, where)
        examples.append(TokenExample([str(t) for t in toks], tags, where))
    return examples


def read_token_examples(source: str | Path, settings: DataSettings, require_labels: bool = True) -> list[TokenExample]:
    source = str(source)
    fmt = settings.format if settings.format != "auto" else (
        "conll" if Path(source).suffix.lower() not in (".jsonl", ".json") and not source.startswith("hf:")
        else detect_format(source))
    examples = (_read_conll(Path(source), settings, require_labels) if fmt == "conll"
                else _read_token_rows(source, settings, require_labels, fmt))
    if not examples:
        raise DataError(source, None, "no sentences found", "give at least one sentence (token tag lines)")
    return examples


def build_tag_map(examples: Sequence[TokenExample], alignment: str) -> LabelMap:
    tags = {t for e in examples for t in e.tags or []}
    if alignment == "all":  # continuations of B-X are labelled I-X, so I-X must exist
        tags |= {"I-" + t[2:] for t in tags if t.startswith("B-")}
    tags.discard("O")
    ordered = ["O"] + sorted(tags, key=lambda t: (t[2:], t[0]))
    return LabelMap(ordered, "single_label")


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """Ids the tokenizer adds before / after a text (e.g. BOS), found by difference."""
    with_special = tokenizer("x")["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    for i in range(len(with_special) - len(plain) + 1):
        if with_special[i : i + len(plain)] == plain:
            return with_special[:i], with_special[i + len(plain):]
    return [], []


def encode_token_examples(tokenizer, examples: Sequence[TokenExample], labels: LabelMap | None, config: RunConfig,
                          source: str = "data", training: bool = False) -> tuple[list[Encoded], int]:
    """Words -> sub-word ids (each word after the first gets a leading space, as in running text),
    units per the alignment setting, targets per unit. Returns (encoded, sentences truncated)."""
    align = config.model.label_alignment
    max_len = config.data.max_length
    prefix, suffix = _special_tokens(tokenizer)
    words = [(" " if k else "") + w for e in examples for k, w in enumerate(e.tokens)]
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
    index = labels.index if labels else None
    out, truncated, p = [], 0, 0
    for e in examples:
        ids, units, targets, kept = list(prefix), [-1] * len(prefix), [], 0
        room = max_len - len(prefix) - len(suffix)
        n_unit = 0
        for k, word in enumerate(e.tokens):
            sub = pieces[p + k] or [tokenizer.unk_token_id or 0]
            if len(ids) - len(prefix) + len(sub) > room:
                break
            tag = e.tags[k] if (e.tags is not None and index is not None) else None
            if tag is not None and tag not in index:
                raise DataError(source, e.where, f"tag {tag!r} never appears in the training data "
                                f"(known tags: {', '.join(labels.names)})", "fix the tag or add examples of it to training")
            if align == "all" and training:
                for j in range(len(sub)):
                    units.append(n_unit)
                    if tag is not None:
                        t = tag if j == 0 or tag == "O" else "I-" + tag[2:]
                        targets.append(index[t])
                    n_unit += 1
            else:
                chosen = {"first": [0], "all": [0], "last": [len(sub) - 1], "mean": range(len(sub))}[align]
                units.extend(n_unit if j in chosen else -1 for j in range(len(sub)))
                if tag is not None:
                    targets.append(index[tag])
                n_unit += 1
            ids.extend(sub)
            kept += 1
        p += len(e.tokens)
        truncated += kept < len(e.tokens)
        ids += suffix
        units += [-1] * len(suffix)
        out.append(Encoded(ids, targets if index is not None else None, units, {"n_words": kept}))
    return out, truncated


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """IOB2 tags -> (type, first word, last word inclusive)."""
    spans, start, kind = [], None, None
    for i, t in enumerate(list(tags) + ["O"]):
        if start is not None and not (t.startswith("I-") and t[2:] == kind):
            spans.append((kind, start, i - 1))
            start = None
        if t.startswith("B-") or (t.startswith("I-") and start is None):
            start, kind = i, t[2:]
    return spans


def token_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    """Entity P/R/F1 (seqeval: default and strict IOB2 modes), per type, token accuracy."""
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                    "support": int(v["support"])} for k, v in report.items() if not k.endswith(" avg")}
    return {
        "f1": float(f1_score(gold, pred)), "precision": float(precision_score(gold, pred)),
        "recall": float(recall_score(gold, pred)),
        "strict_f1": float(f1_score(gold, pred, mode="strict", scheme=IOB2)),
        "strict_precision": float(precision_score(gold, pred, mode="strict", scheme=IOB2)),
        "strict_recall": float(recall_score(gold, pred, mode="strict", scheme=IOB2)),
        "token_accuracy": float(accuracy_score(gold, pred)),
        "per_type": per_type, "n": len(gold),
    }


def _word_tags(model, examples, encoded) -> list[list[str]]:
    names = model.labels.names
    tags = []
    for e, logits in zip(examples, model.logits(encoded)):
        words = [names[i] for i in logits.argmax(-1).tolist()]
        tags.append(words + ["O"] * (len(e.tokens) - len(words)))  # words cut by max_length: counted, tagged O
    return tags


def evaluate_token_examples(model, examples, encoded) -> tuple[dict[str, Any], list]:
    pred = _word_tags(model, examples, encoded)
    metrics = token_metrics([e.tags for e in examples], pred)
    metrics["truncated_sentences"] = sum(enc.extra["n_words"] < len(e.tokens) for e, enc in zip(examples, encoded))
    return metrics, pred


def examples_from_raw_text(texts: Sequence[str]) -> list[TokenExample]:
    """Whitespace-split raw text, keeping each word's character span."""
    out = []
    for i, text in enumerate(texts):
        spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        out.append(TokenExample([text[a:b] for a, b in spans], None, f"--text #{i + 1}", spans, text))
    return out


def predict_token_examples(model, examples, encoded) -> list[dict[str, Any]]:
    rows = []
    for e, tags in zip(examples, _word_tags(model, examples, encoded)):
        text = e.text if e.text is not None else " ".join(e.tokens)
        offsets = e.offsets
        if offsets is None:  # pre-tokenised input: offsets into the words joined by single spaces
            offsets, pos = [], 0
            for w in e.tokens:
                offsets.append((pos, pos + len(w)))
                pos += len(w) + 1
        entities = [{"type": kind, "text": text[offsets[a][0]:offsets[b][1]], "start": offsets[a][0],
                     "end": offsets[b][1], "words": [a, b + 1]} for kind, a, b in entity_spans(tags)]
        rows.append({"text": text, "tokens": e.tokens, "tags": tags, "entities": entities})
    return rows
