"""Prompting baselines for an instruct model.

Sequence tasks: the answer is chosen by the log-likelihood of each label's verbalisation after the
chat template (no free generation), so prompting gets its best chance. The shared part of the prompt
(system turn, k-shot demonstrations, instruction) is run once and its KV cache reused for every
example, so k-shot costs little more than zero-shot. Scores may be length-normalised (per token)
and contextually calibrated (divided by the labels' mean probability for content-free inputs).

NER: the model is asked to list the entities one a line as ``TYPE: text``; lines are parsed strictly
(known type, text found as whole words in the sentence), anything else is ignored and counted.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

from ..prefix_cache import SharedPrefix

__all__ = ["label_scores", "label_likelihood_predict", "ner_prompt_predict"]

_SENTINEL = "\u0000TEXT\u0000"


def _split_template(tok, instruction: str, demos: Sequence[tuple[str, str]]) -> tuple[str, str]:
    messages = []
    for text, answer in demos:
        messages += [{"role": "user", "content": instruction.format(text=text)},
                     {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": instruction.format(text=_SENTINEL)})
    rendered = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    before, after = rendered.split(_SENTINEL)
    return before, after


@torch.no_grad()
def label_scores(lm, tok, texts: Sequence[str], verbalizers: Sequence[str], instruction: str,
                 demos: Sequence[tuple[str, str]] = (), batch_size: int = 16) -> tuple[torch.Tensor, list[int]]:
    """Summed log-probability of each verbaliser after each text's prompt: ((len(texts), L) scores, token counts).

    Two passes per batch, both continuing the shared prefix's KV cache: (1) the texts, left-padded so
    every row ends at the same column, whose last logits score every verbaliser's first token at once;
    (2) only for verbalisers of more than one token: their remaining tokens, one row per (text, such
    label), on the cache of (1) repeated per such label. The text is never re-run per label.
    """
    before, after = _split_template(tok, instruction, demos)
    shared = SharedPrefix(lm, torch.tensor([tok(before, add_special_tokens=False)["input_ids"]]))
    P = shared.length
    labels = [tok(v, add_special_tokens=False)["input_ids"] for v in verbalizers]
    multi = [i for i, lab in enumerate(labels) if len(lab) > 1]  # labels that need pass (2)
    Lm, M = len(multi), max(len(labels[i]) for i in multi) - 1 if multi else 0  # M: tokens after the first
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    first = torch.tensor([lab[0] for lab in labels])
    out = []
    for s in range(0, len(texts), batch_size):
        queries = [tok(t + after, add_special_tokens=False)["input_ids"] for t in texts[s : s + batch_size]]
        B, W = len(queries), max(map(len, queries))
        ids = torch.full((B, W), pad)
        mask = torch.zeros((B, W), dtype=torch.long)
        pos = torch.zeros((B, W), dtype=torch.long)
        for r, q in enumerate(queries):  # left-pad: real tokens end at column W-1, positions P..P+len-1
            ids[r, W - len(q):] = torch.tensor(q)
            mask[r, W - len(q):] = 1
            pos[r, W - len(q):] = P + torch.arange(len(q))
        past = shared.repeated(B)
        logits = shared.run(ids, mask, pos, cache=past).logits
        mask = torch.cat([torch.ones((B, P), dtype=torch.long), mask], 1)  # (B, P + W): what the cache holds
        scores = torch.log_softmax(logits[:, -1].float(), -1)[:, first]  # (B, L): every label's first token
        if multi:  # rows (text, multi-token label): label tokens 0..M-1 predict tokens 1..M
            # only multi-token labels get rows: the cache (prefix + text) is copied once per row, and with
            # a k-shot prefix of ~1,000 tokens that copy, not the label tokens, is the cost
            past.batch_repeat_interleave(Lm)
            ids2 = torch.full((B * Lm, M), pad)
            mask2 = torch.zeros((B * Lm, M), dtype=torch.long)
            for r in range(B * Lm):
                lab = labels[multi[r % Lm]][:-1]
                ids2[r, : len(lab)] = torch.tensor(lab, dtype=torch.long)
                mask2[r, : len(lab)] = 1
            pos2 = (P + torch.tensor([len(q) for q in queries]).repeat_interleave(Lm))[:, None] + torch.arange(M)
            logp2 = torch.log_softmax(shared.run(ids2, mask2, pos2, cache=past,
                                                 cached_mask=mask.repeat_interleave(Lm, 0)).logits.float(), -1)
            for r in range(B * Lm):
                j = multi[r % Lm]
                scores[r // Lm, j] += sum(logp2[r, k, t] for k, t in enumerate(labels[j][1:]))
        out.append(scores)
    return torch.cat(out), [len(lab) for lab in labels]


CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al. (2021), "Calibrate before use"


@torch.no_grad()
def label_likelihood_predict(lm, tok, texts: Sequence[str], verbalizers: Sequence[str], instruction: str,
                             demos: Sequence[tuple[str, str]] = (), batch_size: int = 16, normalize: str = "sum",
                             calibrate: bool = False) -> list[int]:
    """Index of the best verbaliser for each text.

    normalize: ``sum`` (total log-probability of the verbaliser) or ``mean`` (per token, so that
    multi-token verbalisers are not penalised for their length). calibrate: contextual calibration —
    divide each label's probability (normalised over the labels) by its mean probability for
    content-free inputs, which removes the prompt's prior towards some labels.
    """
    if normalize not in ("sum", "mean"):
        raise ValueError(f"normalize={normalize!r}: use sum or mean")
    scores, lengths = label_scores(lm, tok, texts, verbalizers, instruction, demos, batch_size)
    if normalize == "mean":
        scores = scores / torch.tensor(lengths, dtype=scores.dtype)
    if calibrate:
        free, _ = label_scores(lm, tok, list(CONTENT_FREE), verbalizers, instruction, demos, batch_size)
        if normalize == "mean":
            free = free / torch.tensor(lengths, dtype=free.dtype)
        prior = torch.softmax(free, -1).mean(0)  # (L,) the prompt's bias among the labels
        scores = torch.log_softmax(scores, -1) - prior.log()
    return scores.argmax(-1).tolist()


_LINE = re.compile(r"^\s*([A-Za-z-]+)\s*:\s*(.+?)\s*$")


def parse_entities(answer: str, tokens: Sequence[str], types: Sequence[str]) -> tuple[list[str], int]:
    """Strict parse of 'TYPE: text' lines into IOB2 tags over ``tokens``; returns (tags, rejected lines)."""
    tags = ["O"] * len(tokens)
    rejected = 0
    lookup = {t.lower(): t for t in types}
    for line in answer.splitlines():
        if not line.strip() or line.strip().lower() == "none":
            continue
        m = _LINE.match(line)
        kind = lookup.get(m.group(1).lower()) if m else None
        words = m.group(2).split() if m else []
        placed = False
        if kind and words:
            for i in range(len(tokens) - len(words) + 1):
                if list(tokens[i : i + len(words)]) == words and all(t == "O" for t in tags[i : i + len(words)]):
                    tags[i] = "B-" + kind
                    for j in range(i + 1, i + len(words)):
                        tags[j] = "I-" + kind
                    placed = True
                    break
        rejected += not placed
    return tags, rejected


def entity_answer(tokens: Sequence[str], tags: Sequence[str]) -> str:
    """The answer a perfect model would give for a demonstration."""
    from ..tasks.token import entity_spans

    lines = [f"{kind}: {' '.join(tokens[a : b + 1])}" for kind, a, b in entity_spans(tags)]
    return "\n".join(lines) or "none"


@torch.no_grad()
def ner_prompt_predict(lm, tok, sentences: Sequence[Sequence[str]], types: Sequence[str], type_help: str,
                       demos: Sequence[tuple[Sequence[str], Sequence[str]]] = (), batch_size: int = 16,
                       max_new_tokens: int = 48) -> tuple[list[list[str]], int]:
    """Greedy answers to an entity-listing prompt, parsed strictly. Returns (tags per sentence, rejected lines).

    The shared prompt (system turn, demonstrations) is encoded once; each batch continues from a copy
    of its KV cache with the sentence part left-padded behind it (the mask hides the padding).
    """
    instruction = ("List the named entities in the sentence, one per line as TYPE: entity text, with TYPE one of "
                   f"{type_help}. Answer none if there are none.\nSentence: {{text}}")
    demo_pairs = [(" ".join(t), entity_answer(t, g)) for t, g in demos]
    before, after = _split_template(tok, instruction, demo_pairs)
    prefix = tok(before, add_special_tokens=False)["input_ids"]
    P = len(prefix)
    shared = SharedPrefix(lm, torch.tensor([prefix]))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out_tags, rejected = [], 0
    for s in range(0, len(sentences), batch_size):
        chunk = sentences[s : s + batch_size]
        queries = [tok(" ".join(t) + after, add_special_tokens=False)["input_ids"] for t in chunk]
        W = max(map(len, queries))
        ids = torch.full((len(chunk), P + W), pad)
        mask = torch.zeros_like(ids)
        ids[:, :P] = torch.tensor(prefix)
        mask[:, :P] = 1
        for r, q in enumerate(queries):  # left-pad the query part, right after the shared prefix
            ids[r, P + W - len(q):] = torch.tensor(q)
            mask[r, P + W - len(q):] = 1
        gen = lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                          pad_token_id=pad, **shared.generate_kwargs(len(chunk)))
        for toks, row in zip(chunk, gen[:, P + W:]):
            tags, bad = parse_entities(tok.decode(row, skip_special_tokens=True), toks, types)
            out_tags.append(tags)
            rejected += bad
    return out_tags, rejected
