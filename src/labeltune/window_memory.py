"""Windows that remember (``model.window_memory``): each window of a long text also attends to the keys
and values its text's previous window left in every layer.

Transformer-XL's segment recurrence (Dai et al., 2019) on labeltune's windows (sequence task,
``long_documents=window``). A batch's windows run in rounds -- round r holds the r-th window of every
text that has one -- and each continues from the previous round's cache: layer l of window r reads
window r-1's layer-l keys, computed from its layer l-1 states, which read window r-2's, ... so the text a
window sees grows by a window per layer while its attention stays (T x 2T). The memory is the previous
window's text tokens only (not its template turn, closing tokens or padding) and carries no gradient, as
in Transformer-XL: training a window never differentiates into the one before it.

Positions: round r's tokens sit at r x width + their place in the window (width: the batch's padded
row), so rotary embeddings see the memory as the text just before. Windows then need not overlap: the
default stride is a whole window (``Template.encode_windows(..., recurrent=True)``).

``long_documents=stream`` is the same recurrence with nothing dropped: a text is ONE templated sequence cut
into consecutive chunks of max_length tokens (the template's turn once, at the start; its closing once, at
the end), and each chunk attends to the keys and values of every chunk before it, so its states are exactly
those of one forward over the whole text (chunked prefill), and the text is scored from its last token
(``window_pooling`` last). Gradients flow through each text's last chunk only (the memory is detached).

Memory is bounded as for sliced windows: a round holds at most one window per text of the batch (with
``stream``, plus the keys and values of the chunks before it: a few KB per token and layer).
Training is window_cache's GradCache with rounds as the parts: (1) every round without a graph, (2) the
head and loss on all windows' states, (3) every round again with a graph, continuing from the memory
that (3)'s previous round recomputed -- equal to (1)'s (same weights, replayed dropout masks).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Iterator

import torch

from .prefix_cache import cache_kwarg, output_cache
from .window_cache import gradcache_backward

__all__ = ["uses_memory", "window_rounds", "memory_states", "memory_backward"]


def uses_memory(model, batch: dict[str, Any]) -> bool:
    """A windowed batch of a run whose windows remember (else windows are read independently)."""
    return (bool(model.config.model.window_memory) or streams(model.config)) and "window_example" in batch


def streams(config) -> bool:
    """``long_documents=stream``: chunks of one sequence, each reading ALL of its predecessors."""
    return config.data.long_documents == "stream"


def window_rounds(batch: dict[str, Any]) -> list[torch.Tensor]:
    """The batch rows of each round: round r = the r-th window of every text that has one, by text.
    (A text's windows are consecutive rows, in order: ``batching._collate_windows``.)"""
    owner = batch["window_example"]  # (W,) text of each row
    rows = torch.arange(owner.shape[0])
    first = torch.full((batch["num_texts"],), owner.shape[0]).scatter_reduce(0, owner, rows, "amin")
    index = rows - first[owner]  # each row's window number within its text
    return [rows[index == r] for r in range(int(index.max()) + 1)]


def _round(model, batch: dict[str, Any], r: int, rows: torch.Tensor, memory) -> tuple[torch.Tensor, tuple]:
    """(n, H) pooled states of round r's windows (``rows``), and what they leave for the next round:
    (the forward's cache, (n, M) bool of the cache positions the next round may see: this round's text
    tokens (T = M); with ``stream``, every real token of this round and of the memory before it)."""
    dev = model.device
    ids, seg = batch["input_ids"][rows].to(dev), batch["segment_ids"][rows].to(dev)
    local = batch["position_ids"][rows].to(dev)
    n = rows.shape[0]
    part = dict(input_ids=ids, segment_ids=seg, position_ids=local, num_examples=n,
                example_ids=torch.where(seg > 0, torch.arange(n, device=dev)[:, None], -1))
    groups, count = model.task.head_groups(model, part, ids, local)
    mask, kwargs = (seg > 0).long(), {}
    if memory is not None:
        cache, seen = memory
        mask, kwargs = torch.cat([seen, mask], 1), cache_kwarg(model.base_model, cache)
    width = batch["input_ids"].shape[1]
    out = model.backbone(input_ids=ids, attention_mask=mask, position_ids=local + r * width, use_cache=True, **kwargs)
    if streams(model.config):
        visible = mask.bool()  # (n, M + T): the memory's visible positions, then this chunk's real tokens
    else:
        visible = model.template.unpool(ids, local, part["example_ids"], n, closing=True) >= 0
    return model.head.pool(out.last_hidden_state, groups, count), (output_cache(out), visible)


def _memory(left: tuple, keep: torch.Tensor):
    """The memory of the texts at ``keep`` (indices into the last round's rows): the cache's last M
    positions in every layer, detached, and which are visible -- the last round's own keys and values
    (M = T), or with ``stream`` all of them (M: every round so far)."""
    from transformers import DynamicCache

    cache, visible = left
    M = visible.shape[1]
    memory = DynamicCache()
    for i, layer in enumerate(cache.layers):
        memory.update(layer.keys[keep, :, -M:].detach(), layer.values[keep, :, -M:].detach(), i)
    return memory, visible[keep].long()


def _run_rounds(model, batch: dict[str, Any], rounds: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Each round's (n, H) pooled states in turn (a generator: ``gradcache_backward`` replays it)."""
    owner = batch["window_example"]
    left = None
    for r, rows in enumerate(rounds):
        memory = None
        if r:  # round r's texts are a subset of round r-1's, both in text order
            keep = torch.searchsorted(owner[rounds[r - 1]], owner[rows]).to(model.device)
            memory = _memory(left, keep)
        states, left = _round(model, batch, r, rows, memory)
        yield states


def memory_states(model, batch: dict[str, Any]) -> torch.Tensor:
    """(W, H) pooled states of a windowed batch, in row order, each window reading its predecessor's memory."""
    rounds = window_rounds(batch)
    states = torch.cat(list(_run_rounds(model, batch, rounds)))
    return states[torch.argsort(torch.cat(rounds)).to(states.device)]


def memory_backward(model, batch: dict[str, Any], backward: Callable[[torch.Tensor], None], scale: float = 1.0,
                    autocast: Callable[[], Any] = nullcontext) -> torch.Tensor:
    """Accumulate the gradient of ``scale`` x the batch's loss a round at a time (module doc); returns
    the loss (detached)."""
    rounds = window_rounds(batch)
    return gradcache_backward(model, batch, lambda: _run_rounds(model, batch, rounds), torch.cat(rounds), backward,
                              scale, autocast)
