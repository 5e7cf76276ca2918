"""Batch planning and collation.

A batch is a list of *rows*; a row holds one example (padded / bucketed batching) or several
(packed). Collation turns rows into tensors that say, per token, which example and which position
inside it the token has, so the model can mask and pool without ever looking at pad ids:

    input_ids    (B, T)  pad id after the end of each row
    segment_ids  (B, T)  0 = padding, 1.. = k-th example in the row
    position_ids (B, T)  restarts at 0 for every example
    example_ids  (B, T)  index of the example in the batch (0..E-1), -1 = padding
    unit_ids     (B, T)  token task: index of the labelled unit (0..U-1), -1 = unlabelled

A long text read in windows (``Encoded.windows``) puts each window in a row of its own; then
``example_ids`` index the windows (what the head pools) and ``window_example`` (W,) maps each window
to its example (0..E-1), whose states the head combines.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import torch

from .examples import Encoded

__all__ = ["plan_batches", "collate", "inference_batches"]


def plan_batches(lengths: Sequence[int], mode: str, batch_size: int, max_tokens: int, row_tokens: int,
                 rng: random.Random | None = None) -> list[list[list[int]]]:
    """Group example indices into batches of rows.

    padded:   file order (shuffled when ``rng``), ``batch_size`` examples a batch, one a row.
    bucketed: length-sorted within large random chunks, so rows in a batch have similar lengths;
              at most ``batch_size`` examples and ``max_tokens`` padded tokens a batch.
    packed:   ``batch_size`` random examples a batch, packed first-fit-decreasing into rows of at
              most ``row_tokens`` tokens (no padding inside a row, little at the end).
    """
    order = list(range(len(lengths)))
    if rng is not None:
        rng.shuffle(order)
    batches: list[list[list[int]]] = []
    if mode == "padded":
        for s in range(0, len(order), batch_size):
            batches.append([[i] for i in order[s : s + batch_size]])
        return batches
    if mode == "bucketed":
        chunk = batch_size * 64
        for c in range(0, len(order), chunk):
            part = sorted(order[c : c + chunk], key=lambda i: lengths[i])
            current: list[int] = []
            for i in part:
                width = max([lengths[j] for j in current] + [lengths[i]])
                if current and (len(current) >= batch_size or width * (len(current) + 1) > max_tokens):
                    batches.append([[j] for j in current])
                    current = []
                current.append(i)
            if current:
                batches.append([[j] for j in current])
        if rng is not None:
            rng.shuffle(batches)
        return batches
    if mode == "packed":
        for s in range(0, len(order), batch_size):
            rows: list[list[int]] = []
            room: list[int] = []
            for i in sorted(order[s : s + batch_size], key=lambda i: -lengths[i]):
                for r, free in enumerate(room):
                    if lengths[i] <= free:
                        rows[r].append(i)
                        room[r] -= lengths[i]
                        break
                else:
                    rows.append([i])
                    room.append(max(row_tokens, lengths[i]) - lengths[i])
            batches.append(rows)
        return batches
    raise ValueError(f"unknown batching mode {mode!r}")


def inference_batches(lengths: Sequence[int], max_tokens: int, max_examples: int = 256) -> list[list[list[int]]]:
    """Length-sorted batches under a padded-token budget; callers restore input order."""
    return plan_batches(lengths, "bucketed", max_examples, max_tokens, 0, rng=None)


def collate(rows: list[list[int]], examples: Sequence[Encoded], pad_id: int, problem: str) -> dict[str, Any]:
    """Rows of example indices -> tensors (see module doc). ``problem``: single_label, multi_label,
    regression, token or none (no labels)."""
    if any(examples[i].windows for row in rows for i in row):
        return _collate_windows(rows, examples, pad_id, problem)
    width = max(sum(len(examples[i]) for i in row) for row in rows)
    B = len(rows)
    input_ids = torch.full((B, width), pad_id, dtype=torch.long)
    segment_ids = torch.zeros((B, width), dtype=torch.long)
    position_ids = torch.zeros((B, width), dtype=torch.long)
    example_ids = torch.full((B, width), -1, dtype=torch.long)
    unit_ids = torch.full((B, width), -1, dtype=torch.long)
    order, targets, unit_targets = [], [], []
    n_units = 0
    for b, row in enumerate(rows):
        start = 0
        for k, i in enumerate(row):
            ex = examples[i]
            n = len(ex)
            sl = slice(start, start + n)
            input_ids[b, sl] = torch.tensor(ex.input_ids)
            segment_ids[b, sl] = k + 1
            position_ids[b, sl] = torch.arange(n)
            example_ids[b, sl] = len(order)
            if ex.units is not None:
                u = torch.tensor(ex.units)
                unit_ids[b, sl] = torch.where(u >= 0, u + n_units, u)
                n_units += max(ex.units) + 1 if any(x >= 0 for x in ex.units) else 0
                if problem == "token":
                    unit_targets.extend(ex.target)
            elif problem not in ("none", "token"):
                targets.append(ex.target)
            order.append(i)
            start += n
        # pad positions continue counting so rotary tables stay in range; they are masked anyway
        position_ids[b, start:] = torch.arange(width - start)
    batch = dict(input_ids=input_ids, segment_ids=segment_ids, position_ids=position_ids, example_ids=example_ids,
                 num_examples=len(order), order=order, real_tokens=int((segment_ids > 0).sum()))
    if any(examples[i].units is not None for row in rows for i in row):
        batch.update(unit_ids=unit_ids, num_units=n_units)
    if problem == "token":
        batch["labels"] = torch.tensor(unit_targets, dtype=torch.long)
    elif problem == "single_label":
        batch["labels"] = torch.tensor(targets, dtype=torch.long)
    elif problem in ("multi_label", "regression"):
        batch["labels"] = torch.tensor(targets, dtype=torch.float)
    return batch


def _collate_windows(rows: list[list[int]], examples: Sequence[Encoded], pad_id: int, problem: str) -> dict[str, Any]:
    """Sequence task with windowed texts: one row per window (a text that fits is one window)."""
    pieces: list[tuple[int, list[int]]] = []  # (example position in the batch, window ids)
    order: list[int] = []
    for row in rows:
        for i in row:
            ex = examples[i]
            bounds = ex.windows or [len(ex)]
            start = 0
            for n in bounds:
                pieces.append((len(order), ex.input_ids[start:start + n]))
                start += n
            order.append(i)
    width = max(len(ids) for _, ids in pieces)
    W = len(pieces)
    input_ids = torch.full((W, width), pad_id, dtype=torch.long)
    segment_ids = torch.zeros((W, width), dtype=torch.long)
    example_ids = torch.full((W, width), -1, dtype=torch.long)
    for w, (_, ids) in enumerate(pieces):
        input_ids[w, : len(ids)] = torch.tensor(ids)
        segment_ids[w, : len(ids)] = 1
        example_ids[w, : len(ids)] = w
    position_ids = torch.arange(width).expand(W, width).clone()
    batch = dict(input_ids=input_ids, segment_ids=segment_ids, position_ids=position_ids, example_ids=example_ids,
                 num_examples=W, order=order, real_tokens=int((segment_ids > 0).sum()),
                 window_example=torch.tensor([e for e, _ in pieces]), num_texts=len(order))
    targets = [examples[i].target for i in order]
    if problem == "single_label":
        batch["labels"] = torch.tensor(targets, dtype=torch.long)
    elif problem in ("multi_label", "regression"):
        batch["labels"] = torch.tensor(targets, dtype=torch.float)
    return batch
