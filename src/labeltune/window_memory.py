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
(``window_pooling`` last). Its gradients are those of that one forward too (``stream_backward``): the
chunks are replayed last to first, each with a graph, and the gradient a chunk's keys and values received
from the chunks after it flows on into the chunk that computed them -- backpropagation through the memory,
with the activations of one round alive at a time.

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
from .window_cache import torch_rng_state, gradcache_backward, replayed_rng

__all__ = ["uses_memory", "streams", "window_rounds", "memory_states", "memory_backward", "stream_backward"]


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


def _memory(left: tuple, keep: torch.Tensor, attached: bool = False):
    """The memory of the texts at ``keep`` (indices into the last round's rows): the cache's last M
    positions in every layer and which are visible -- the last round's own keys and values (M = T),
    detached; or with ``stream`` all of them (M: every round so far), attached (in one graph, the
    gradient then flows through them as through one forward over the whole text)."""
    from transformers import DynamicCache

    cache, visible = left
    M = visible.shape[1]
    stop = (lambda t: t) if attached else torch.Tensor.detach
    memory = DynamicCache()
    for i, layer in enumerate(cache.layers):
        memory.update(stop(layer.keys[keep, :, -M:]), stop(layer.values[keep, :, -M:]), i)
    return memory, visible[keep].long()


def _run_rounds(model, batch: dict[str, Any], rounds: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Each round's (n, H) pooled states in turn (a generator: ``gradcache_backward`` replays it)."""
    owner = batch["window_example"]
    left = None
    for r, rows in enumerate(rounds):
        memory = None
        if r:  # round r's texts are a subset of round r-1's, both in text order
            keep = torch.searchsorted(owner[rounds[r - 1]], owner[rows]).to(model.device)
            memory = _memory(left, keep, attached=streams(model.config))
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
    if streams(model.config):
        return stream_backward(model, batch, rounds, backward, scale, autocast)
    return gradcache_backward(model, batch, lambda: _run_rounds(model, batch, rounds), torch.cat(rounds), backward,
                              scale, autocast)


def stream_backward(model, batch: dict[str, Any], rounds: list[torch.Tensor], backward: Callable[[torch.Tensor], None],
                    scale: float = 1.0, autocast: Callable[[], Any] = nullcontext) -> torch.Tensor:
    """``long_documents=stream``: the gradient of ``scale`` x the batch's loss, exactly that of one forward
    over each whole text, with one round's activations alive at a time. (1) every round without a graph,
    keeping each round's pooled states and its own (n, heads, T, d) keys and values in every layer;
    (2) the head and loss: each state's gradient; (3) the rounds from last to first, each with a graph
    over its memory (the earlier rounds' keys and values, as leaves): backward of its states and of its
    own keys and values (the gradient later rounds gave them), and the leaves' gradients added to the
    earlier rounds'. Dropout masks are replayed (each round's RNG state). Returns the loss (detached)."""
    from transformers import DynamicCache

    device, owner = model.device, batch["window_example"]
    # where round k's texts sit among round j's rows (j <= k): texts run in every round up to their last
    where = [[torch.searchsorted(owner[rounds[j]], owner[rounds[k]]).to(device) for j in range(k)]
             for k in range(len(rounds))]
    T = batch["input_ids"].shape[1]  # a round's row width: its own positions are the cache's last T

    def memory_of(k: int, own: list, leaves: bool):
        """Round k's memory: per layer, rounds 0..k-1's own keys/values of round k's texts, end to end."""
        if not k:
            return None, []
        cache, made = DynamicCache(), []
        for layer in range(len(own[0])):
            kv = [torch.cat([own[j][layer][x][where[k][j]] for j in range(k)], 2) for x in (0, 1)]
            if leaves:
                kv = [t.detach().requires_grad_() for t in kv]
                made.append(kv)
            cache.update(kv[0], kv[1], layer)
        seen = torch.ones(len(rounds[k]), T * k, dtype=torch.long, device=device)
        return (cache, seen), made

    def own_kv(left) -> list:
        return [(layer.keys[:, :, -T:], layer.values[:, :, -T:]) for layer in left[0].layers]

    rng, states, own = [], [], []
    with torch.no_grad():  # (1)
        for k, rows in enumerate(rounds):
            rng.append(torch_rng_state(device))
            memory, _ = memory_of(k, own, leaves=False)
            with autocast():
                part, left = _round(model, batch, k, rows, memory)
            states.append(part)
            own.append([(keys.clone(), values.clone()) for keys, values in own_kv(left)])  # not views of
            del left  # the whole cache, which would keep every earlier round's positions alive again
    cached = torch.cat(states).detach().requires_grad_()
    with autocast():  # (2)
        logits = model.score_states(cached[torch.argsort(torch.cat(rounds).to(device))], batch)
    loss = model.loss(logits, batch)
    backward(loss * scale)
    state_grad = cached.grad.split([len(r) for r in rounds])
    # the gradient each round's own keys/values receive from later rounds (fp32: summed over rounds)
    kv_grad = [[[torch.zeros_like(t, dtype=torch.float32) for t in layer] for layer in round_kv] for round_kv in own]
    for k in reversed(range(len(rounds))):  # (3)
        memory, leaves = memory_of(k, own, leaves=True)
        with replayed_rng(rng[k], device), autocast():
            part, left = _round(model, batch, k, rounds[k], memory)
        outputs, grads = [part], [state_grad[k].to(part.dtype)]
        for layer, kv in enumerate(own_kv(left)):
            for x, t in enumerate(kv):
                if t.requires_grad:  # (not the first layer's keys without an adapter on k_proj: frozen)
                    outputs.append(t)
                    grads.append(kv_grad[k][layer][x].to(t.dtype))
        torch.autograd.backward(outputs, grads)
        for layer, pair in enumerate(leaves):  # the memory's gradient, back to the rounds that computed it
            for x, leaf in enumerate(pair):
                if leaf.grad is None:  # no query reads it with a gradient (nothing to pass back)
                    continue
                for j in range(k):
                    kv_grad[j][layer][x].index_add_(0, where[k][j], leaf.grad[:, :, j * T:(j + 1) * T].float())
        own[k] = kv_grad[k] = None  # round k is done: later rounds were replayed before it
        del memory, leaves, left, part
    return loss.detach()
