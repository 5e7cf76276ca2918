"""The benchmark datasets in ../shared/data: where each split lives, how to read it, how to prompt it."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

from ..config import DataSettings
from ..data.conll import conll_line
from ..errors import ConfigError

__all__ = ["BenchDataset", "DATASETS", "prepare"]


@dataclass
class BenchDataset:
    name: str
    task: str  # sequence | token
    train: str  # path relative to the data root
    eval: str
    data: dict = field(default_factory=dict)  # DataSettings fields
    verbalizers: dict = field(default_factory=dict)  # label -> word (sequence prompting)
    # the prompt's wording: question before or after the text, whichever scored better (calibrated)
    # on 200 training examples (seed 7) with the embedded model — benchmarks/prompt_wording.py
    instruction: str = ""
    types: dict = field(default_factory=dict)  # entity type -> description (NER prompting)


DATASETS = {
    "sst2": BenchDataset("sst2", "sequence", "sst2/train.tsv", "sst2/dev.tsv", {"text_column": "sentence"},
                         {"0": "negative", "1": "positive"},
                         "Review: {text}\nIs the sentiment of this movie review positive or negative?"),
    "sst5": BenchDataset("sst5", "sequence", "sst5/stsa.fine.train", "sst5/stsa.fine.dev", {"format": "label-text"},
                         {"0": "terrible", "1": "bad", "2": "neutral", "3": "good", "4": "great"},
                         "How positive is this movie review? Answer terrible, bad, neutral, good or great.\n"
                         "Review: {text}"),
    "twitter_fin": BenchDataset("twitter_fin", "sequence", "twitter_fin/sent_train.csv", "twitter_fin/sent_valid.csv",
                                {}, {"0": "bearish", "1": "bullish", "2": "neutral"},
                                "Tweet: {text}\nIs this financial tweet bearish, bullish or neutral?"),
    "trec6": BenchDataset("trec6", "sequence", "trec/TREC.train", "trec/TREC.test",
                          {"format": "label-text", "label_delimiter": ":"},
                          {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
                           "LOC": "location", "NUM": "number"},
                          "What does this question ask for? Answer abbreviation, description, entity, human, "
                          "location or number.\nQuestion: {text}"),
    "imdb": BenchDataset("imdb", "sequence", "imdb/train.csv", "imdb/test.csv", {},
                         {"negative": "negative", "positive": "positive"},
                         "Review: {text}\nIs the sentiment of this movie review positive or negative?"),
    "conll2003": BenchDataset("conll2003", "token", "conll2003/train.txt", "conll2003/valid.txt", {},
                              types={"PER": "person", "ORG": "organisation", "LOC": "location",
                                     "MISC": "other names (nationalities, events, works)"}),
    "wnut17": BenchDataset("wnut17", "token", "wnut17/wnut17train.conll", "wnut17/emerging.dev.conll", {},
                           types={"person": "person", "location": "location", "corporation": "company",
                                  "product": "product", "creative-work": "title of a work", "group": "group"}),
}


EVAL_SEED = 0  # the evaluation subset is one draw, whatever the training seed: every cell scores the same examples


def prepare(ds: BenchDataset, root: Path, train_size: int | None, seed: int, work: Path,
            eval_size: int | None = None) -> tuple[Path, Path]:
    """Seeded training subset and the evaluation split (all of it, or a subset of ``eval_size`` drawn
    with EVAL_SEED, the same for every seed and method) written under ``work``; returns (train, eval) paths."""
    src_train, src_eval = root / ds.train, root / ds.eval
    for p in (src_train, src_eval):
        if not p.exists():
            raise ConfigError(f"{p} not found; point --data-root at the folder with the benchmark data")
    work.mkdir(parents=True, exist_ok=True)
    # both splits are rewritten as UTF-8 (TREC ships Latin-1 bytes, which the readers rightly reject)
    return (_subset(ds, src_train, train_size, seed, work / f"{ds.name}-train{train_size or ''}-{seed}"),
            _subset(ds, src_eval, eval_size, EVAL_SEED, work / f"{ds.name}-eval-{eval_size or 'all'}"))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1")


def _subset(ds: BenchDataset, src: Path, n: int | None, seed: int, out_stem: Path) -> Path:
    return {"token": _subset_sentences, "sequence": _subset_rows}[ds.task](ds, src, n, seed, out_stem)


def _subset_sentences(ds: BenchDataset, src: Path, n: int | None, seed: int, out_stem: Path) -> Path:
    """CoNLL: sentences (blocks between blank lines, as the CoNLL reader splits them: ``conll_line``)
    in a seeded order, the first ``n``."""
    blocks, block = [], []
    for raw in _read_text(src).splitlines():
        line = conll_line(raw)
        if line and not line.startswith("-DOCSTART-"):
            block.append(raw)
        elif block:
            blocks.append("\n".join(block))
            block = []
    if block:
        blocks.append("\n".join(block))
    random.Random(seed).shuffle(blocks)
    out = out_stem.with_suffix(".conll")
    out.write_text("\n\n".join(blocks[:n] if n else blocks) + "\n")
    return out


def _subset_rows(ds: BenchDataset, src: Path, n: int | None, seed: int, out_stem: Path) -> Path:
    """LABEL-text lines or CSV/TSV rows in a seeded order, the first ``n``."""
    settings = DataSettings(**ds.data)
    if settings.format == "label-text":
        lines = [l for l in _read_text(src).splitlines() if l.strip()]
        random.Random(seed).shuffle(lines)
        out = out_stem.with_suffix(".txt")
        out.write_text("\n".join(lines[:n] if n else lines) + "\n")
        return out
    delim = "\t" if src.suffix == ".tsv" else ","
    quoting = csv.QUOTE_NONE if delim == "\t" else csv.QUOTE_MINIMAL
    rows = list(csv.reader(_read_text(src).splitlines(), delimiter=delim, quoting=quoting))
    head, body = rows[0], rows[1:]
    random.Random(seed).shuffle(body)
    out = out_stem.with_suffix(src.suffix)
    with open(out, "w", newline="") as f:
        w = csv.writer(f, delimiter=delim, quoting=quoting, escapechar="\\" if quoting == csv.QUOTE_NONE else None)
        w.writerow(head)
        w.writerows(body[:n] if n else body)
    return out
