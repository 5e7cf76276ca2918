"""The token task: an IOB2 tag per word (NER), read from each word's final states.

Words are tokenised one by one (a leading space after the first word, as in running text). The
alignment setting decides which sub-words form each word's unit:
    first / last: the first / last sub-word of each word      (one unit a word)
    mean:         all sub-words of a word, states averaged      (one unit a word)
    all:          every sub-word while training; continuations of B-X/I-X get I-X
                  (evaluation and prediction read the first sub-word)
Predictions map back to words and entity spans with character offsets.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from ..errors import ConfigError, DataError
from ..template import special_tokens
from .base import Task, check_texts

__all__ = ["TokenTask", "build_tag_map", "encode_token_examples", "entity_spans", "examples_from_raw_text"]


def build_tag_map(examples: Sequence, alignment: str):
    from ..data.labels import LabelMap

    tags = {t for e in examples for t in e.tags or []}
    if alignment == "all":  # continuations of B-X are labelled I-X, so I-X must exist
        tags |= {"I-" + t[2:] for t in tags if t.startswith("B-")}
    tags.discard("O")
    ordered = ["O"] + sorted(tags, key=lambda t: (t[2:], t[0]))
    return LabelMap(ordered, "single_label")


def encode_token_examples(tokenizer, examples: Sequence, labels, config, source: str = "data",
                          training: bool = False):
    """Words -> sub-word ids, units per the alignment setting, targets per unit (when ``labels``).
    Returns (encoded, sentences truncated). With ``long_documents=window`` nothing is truncated: a
    sentence is read with its document around it and, when longer than a window, in several windows
    (``Encoded.windows``; ``TokenTask.pieces`` splits them into examples of their own)."""
    from ..data.examples import Encoded

    max_len = config.data.max_length
    prefix, suffix = special_tokens(tokenizer)
    room = max_len - len(prefix) - len(suffix)
    if room < 1:
        raise ConfigError(f"max_length={max_len} leaves no room for words beside the tokenizer's "
                          f"{len(prefix) + len(suffix)} special tokens; raise --max-length")
    words = [(" " if k else "") + w for e in examples for k, w in enumerate(e.tokens)]
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
    unk = [tokenizer.unk_token_id or 0]
    sub_words, p = [], 0  # per example: each word's sub-word ids
    for e in examples:
        sub_words.append([pieces[p + k] or unk for k in range(len(e.tokens))])
        p += len(e.tokens)
    tagger = _UnitTagger(labels, config.model.label_alignment, training, source)
    if config.data.long_documents == "window":
        # a sentence's first word inside running text (after its document's previous sentence) takes
        # the leading space the other words have
        firsts = tokenizer([" " + e.tokens[0] for e in examples], add_special_tokens=False)["input_ids"] if examples else []
        return _encode_windows(examples, sub_words, [f or unk for f in firsts], tagger, prefix, suffix, room,
                               config.data.window_stride)
    out, truncated = [], 0
    for e, subs in zip(examples, sub_words):
        ids, units, targets, kept = list(prefix), [-1] * len(prefix), [], 0
        tagger.start_example()
        for k, sub in enumerate(subs):
            if len(ids) - len(prefix) + len(sub) > room:
                break
            tagger.word(e, k, sub, units, targets)
            ids.extend(sub)
            kept += 1
        truncated += kept < len(e.tokens)
        ids += suffix
        units += [-1] * len(suffix)
        out.append(Encoded(ids, targets if tagger.index is not None else None, units, {"n_words": kept}))
    return out, truncated


class _UnitTagger:
    """Appends one word's units (per the alignment) and targets; ``n_unit`` counts the units of the
    example being encoded (``start_example`` resets it)."""

    def __init__(self, labels, align: str, training: bool, source: str):
        self.labels, self.align, self.training, self.source = labels, align, training, source
        self.index = labels.index if labels else None
        self.n_unit = 0

    def start_example(self) -> None:
        self.n_unit = 0

    def word(self, example, k: int, sub: list[int], units: list[int], targets: list[int]) -> None:
        tag = example.tags[k] if (example.tags is not None and self.index is not None) else None
        if tag is not None and tag not in self.index:
            raise DataError(self.source, example.where, f"tag {tag!r} never appears in the training data "
                            f"(known tags: {', '.join(self.labels.names)})", "fix the tag or add examples of it to training")
        if self.align == "all" and self.training:
            for j in range(len(sub)):
                units.append(self.n_unit)
                if tag is not None:
                    targets.append(self.index[tag if j == 0 or tag == "O" else "I-" + tag[2:]])
                self.n_unit += 1
        else:
            chosen = {"first": [0], "all": [0], "last": [len(sub) - 1], "mean": range(len(sub))}[self.align]
            units.extend(self.n_unit if j in chosen else -1 for j in range(len(sub)))
            if tag is not None:
                targets.append(self.index[tag])
            self.n_unit += 1


def _encode_windows(examples, sub_words, spaced_firsts, tagger, prefix, suffix, room: int, stride: int):
    """Each sentence in the stream of its document's words (``TokenExample.document``; consecutive
    sentences with the same value), windows per ``data.windows.word_windows``. A sentence's first word
    is written as at the start of a text where a window starts with it, else with its leading space."""
    from ..data.examples import Encoded
    from ..data.windows import word_windows

    step = stride or max(1, room // 2)
    out, truncated, i = [], 0, 0
    while i < len(examples):  # one document at a time
        j = i + 1
        while j < len(examples) and examples[i].document is not None and examples[j].document == examples[i].document:
            j += 1
        bare, spaced, lens = [], [], []  # per word of the stream: its ids at a window's start, and inside one
        for n in range(i, j):
            for k, sub in enumerate(sub_words[n]):
                inner = spaced_firsts[n] if k == 0 else sub
                bare.append(sub[:room])  # a word longer than a window is clipped (and counted)
                spaced.append(inner[:room])
                # a sentence alone: its first word always starts a window; in a document it may not
                lens.append(len(bare[-1]) if j - i == 1 else max(len(bare[-1]), len(spaced[-1])))
        starts = [0]
        for n in range(i, j):
            starts.append(starts[-1] + len(examples[n].tokens))
        for n in range(i, j):
            e, a, b = examples[n], starts[n - i], starts[n - i + 1]
            lo, hi = max(0, a - room), min(len(lens), b + room)  # no window reaches further
            spans = word_windows(lens[lo:hi], a - lo, b - lo, room, step)
            ids, units, targets, windows = [], [], [], []
            tagger.start_example()
            for s, t, la, lb in spans:
                w_ids, w_units = list(prefix), [-1] * len(prefix)
                for k in range(lo + s, lo + t):
                    word = bare[k] if k == lo + s else spaced[k]
                    if lo + la <= k < lo + lb:
                        tagger.word(e, k - a, word, w_units, targets)
                    else:
                        w_units.extend([-1] * len(word))
                    w_ids.extend(word)
                ids += w_ids + suffix
                units += w_units + [-1] * len(suffix)
                windows.append(len(w_ids) + len(suffix))
            truncated += any(len(sub) > room for sub in sub_words[n])
            out.append(Encoded(ids, targets if tagger.index is not None else None, units, {"n_words": len(e.tokens)},
                               windows if len(windows) > 1 else None))
        i = j
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


def examples_from_raw_text(texts: Sequence[str]) -> list:
    """Whitespace-split raw text, keeping each word's character span."""
    from ..data.examples import TokenExample

    out = []
    for i, text in enumerate(texts):
        spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        out.append(TokenExample([text[a:b] for a, b in spans], None, f"--text #{i + 1}", spans, text))
    return out


class TokenTask(Task):
    name = "token"
    uses_template = False
    default_head_dropout = 0.1
    # bidirectional attention in every layer (the paper's LS-unLLaMA): with this LoRA and schedule it led
    # from:0.33 on all four cells of CoNLL-2003 / WNUT-17 at 300 / 1,000 sentences (docs/RESULTS.md,
    # "WNUT-17 after the sweep"; benchmarks/suites/ner_unmask_all.yaml); with 0.9's head at the LoRA rate
    # from:0.33 won WNUT-17 at 300 (40.8 vs 36.2) and lost the other three, WNUT-17 at 1,000 collapsing
    # to 13.4 (benchmarks/suites/ner_unmask_from033.yaml)
    default_unmask = "all"
    # the lower two thirds of the decoder (model.depth; 20 of SmolLM2-135M's 30 layers, the rest dropped):
    # the same entity F1 for ~0.6x the training time: WNUT-17 at 1,000 sentences 49.7 +- 4.3 over three
    # seeds against 48.9 +- 1.4 with every layer (encoder 51.0 +- 0.8), CoNLL-2003 at 1,000 85.4 vs 85.2;
    # at 300 CoNLL-2003 79.7 vs 74.9, WNUT-17 35.1 vs 45.3 (seed 0; docs/RESULTS.md, "The token task
    # reads two thirds of the layers"; benchmarks/suites/ner_depth*.yaml)
    default_depth = "0.67"
    # LoRA on every linear layer: CoNLL-2003 at 300 sentences 71.0 entity F1 against 56.8 with the sequence
    # task's q/k/v/o rank 16 (docs/RESULTS.md, benchmarks/suites/ner_gap.yaml); at rank 32 rather than 64:
    # CoNLL-2003 at 300 / 1,000 68.4 / 84.7 (rank 64: 74.0 / 84.9), WNUT-17 40.4 / 52.4 (30.8 / 48.3), the
    # encoder 68.0 / 83.9 and 32.1 / 51.7 — rank 32 is ahead of it on all four cells, rank 64 on two
    # (benchmarks/suites/ner_rank32.yaml; one seed, bf16 attention: the 0.8 sweep, fp32 attention, gave
    # 69.1 / 85.2 / 31.7 / 41.1 — WNUT-17 at 1,000 over three seeds: 45.5 ± 4.4 vs the encoder's
    # 51.0 ± 0.8, ner_wnut_seeds.yaml); and LoRA dropout 0.05: without it (rank 64) CoNLL-2003 at 300
    # fell to 71.3 (from 74.0) and WNUT-17 to 18.4 (from 30.8) (benchmarks/suites/ner_lora_dropout.yaml)
    # adapters on every layer: on the upper half only (lora.layers from:0.5, 1.56x faster token steps) the
    # sweep's cells lost 0.1-9.3 entity F1 (CoNLL-2003 at 1,000: 80.2 vs 87.2; ner_lora_layers.yaml)
    default_lora = {"r": 32, "target_modules": "all-linear", "dropout": 0.05, "layers": "all"}
    # at least 10 passes of 16 (recipe.py: that floor at most 640 steps): CoNLL-2003 at 1,000 sentences,
    # 2.4 passes (150 steps) 75.3 entity F1, 6 passes 83.4, 10 passes 84.1 (the encoder: 83.9 with its
    # 10 passes); docs/RESULTS.md, benchmarks/suites/ner_steps.yaml. Capped at 400 steps (6.4 passes at
    # 1,000): WNUT-17 the same over three seeds (45.7 vs 45.5), CoNLL-2003 77.8 vs 85.2 (ner_wnut_seeds.yaml)
    min_passes = 10.0
    # the head at LoRA's learning rate (1e-3), not the sequence task's 10x: CoNLL-2003 at 300 / 1,000
    # sentences 76.7 / 87.2 entity F1 vs 68.5 / 84.8, WNUT-17 at 300 36.2 vs 30.4 (the sizes sweep's seed-0
    # cells), WNUT-17 at 1,000 48.9 ± 1.4 vs 46.2 ± 3.5 over three seeds (docs/RESULTS.md, "Data-size sweep"
    # and "The head at the LoRA learning rate")
    default_head_lr_scale = 1.0
    report_metrics = ("f1",)

    def check_settings(self, model):
        if model.problem_type != "single_label":
            raise ConfigError("task=token supports problem_type=single_label only (one tag per word)")
        if model.head_init != "random":
            raise ConfigError("head_init=labels applies to the sequence task (tags are not words)")

    def check_run(self, config):
        if config.data.template not in (None, "auto"):
            raise ConfigError("data.template applies to the sequence task only (token labels follow the words as given)")
        if config.data.text_pair_column:
            raise ConfigError("text_pair_column applies to the sequence task only")
        if config.train.calibration_split:
            raise ConfigError("calibration_split applies to the sequence task only (tags are not calibrated)")
        if config.model.window_memory:
            raise ConfigError("window_memory applies to the sequence task only (the token task reads each sentence "
                              "in one window of its document); leave it off")
        if config.data.long_documents == "stream":
            raise ConfigError("long_documents=stream applies to the sequence task only; the token task reads long "
                              "documents with long_documents=window")

    # ---- data -----------------------------------------------------------------------------------
    def read(self, source, config, require_labels=True):
        from ..data.conll import read_token_examples

        return read_token_examples(source, config.data, require_labels)

    def iter_read(self, source, config, require_labels=True):
        from ..data.conll import iter_token_examples

        return iter_token_examples(source, config.data, require_labels)

    def together(self, previous, example, config):
        return (config.data.long_documents == "window" and previous.document is not None
                and example.document == previous.document)

    def from_texts(self, texts, pairs, config):
        if pairs is not None:
            raise ConfigError("token runs tag single texts; give no pairs")
        check_texts(texts, "text")
        return examples_from_raw_text(texts)

    def build_labels(self, examples, config):
        return build_tag_map(examples, config.model.label_alignment)

    def encode(self, model, examples, with_targets=True, source="data", training=False):
        return encode_token_examples(model.tokenizer, examples, model.labels if with_targets else None, model.config,
                                     source, training)

    def problem(self, labels):
        return "token"

    def pieces(self, encoded):
        """A sentence read in several windows becomes one example per window (its units renumbered from
        0, its targets those units'), so windows batch, pack and count against the token budget like
        any example; ``owner`` maps each piece back to its sentence."""
        from ..data.examples import Encoded

        if not any(e.windows for e in encoded):
            return list(encoded), None
        out, owner = [], []
        for n, e in enumerate(encoded):
            if not e.windows:
                out.append(e)
                owner.append(n)
                continue
            start = 0
            for length in e.windows:
                units = e.units[start:start + length]
                labelled = [u for u in units if u >= 0]
                base, count = labelled[0], labelled[-1] - labelled[0] + 1
                out.append(Encoded(e.input_ids[start:start + length],
                                   e.target[base:base + count] if e.target is not None else None,
                                   [u - base if u >= 0 else -1 for u in units], e.extra))
                owner.append(n)
                start += length
        return out, owner

    def primary_metric(self, labels):
        return "f1", True

    def flat_targets(self, encoded):
        return [t for e in encoded for t in e.target]

    # ---- model ----------------------------------------------------------------------------------
    def make_head(self, hidden_size, labels, config):
        from ..heads import TokenHead

        return TokenHead(hidden_size, len(labels), config.model.head_dropout, config.model.head_bias)

    def head_groups(self, model, batch, ids, pos):
        return batch["unit_ids"].to(ids.device), batch["num_units"]

    def split_logits(self, logits, batch, encoded):
        import torch

        counts = [max(encoded[i].units, default=-1) + 1 for i in batch["order"]]
        return list(torch.split(logits, counts))

    # ---- outputs --------------------------------------------------------------------------------
    def word_tags(self, model, examples, encoded, logits=None) -> list[list[str]]:
        """The argmax tag of each word; words cut off by max_length are tagged O (and counted)."""
        names = model.labels.names
        tags = []
        for e, word_logits in zip(examples, logits if logits is not None else model.logits(encoded)):
            words = [names[i] for i in word_logits.argmax(-1).tolist()]
            tags.append(words + ["O"] * (len(e.tokens) - len(words)))
        return tags

    def evaluate(self, model, examples, encoded, logits=None):
        from ..metrics import token_metrics

        pred = self.word_tags(model, examples, encoded, logits)
        metrics = token_metrics([e.tags for e in examples], pred)
        metrics["truncated_sentences"] = sum(enc.extra["n_words"] < len(e.tokens) for e, enc in zip(examples, encoded))
        return metrics, pred

    def prediction_rows(self, model, examples, encoded) -> list[dict[str, Any]]:
        rows = []
        for e, tags in zip(examples, self.word_tags(model, examples, encoded)):
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

    def same_decisions(self, reference, other, model):
        import torch

        return all(torch.equal(a.argmax(-1), b.float().argmax(-1)) for a, b in zip(reference, other))

    def csv_fields(self, config, labels):
        return ["text", "tokens", "tags", "entities"]

    def plots(self, folder, metrics, labels):
        from ..report import plot_entity_f1

        if "per_type" in metrics:
            plot_entity_f1(metrics["per_type"], folder / "entity_f1.png")
