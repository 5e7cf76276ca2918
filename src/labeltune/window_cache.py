"""Long texts whose windows do not fit one batch: scored and trained a slice of windows at a time.

A text read in windows (``long_documents=window``, sequence task) is scored from all its windows at
once: their pooled states are combined (mean, max, attention, last) before the head. A batch holds whole
texts -- in training ``batch_size`` of them, planned by their widest window (training.py) -- so a batch
past the token budget (``batch_size x max_length`` when training, ``eval_batch_tokens`` when scoring)
would make a forward as large as its texts. Here such a batch runs in slices of windows that each fit
the budget:

- scoring (no gradient): each slice's pooled (W_slice, H) states are kept, the head combines them;
- training, as GradCache (Gao et al., 2021): (1) every slice forward without a graph, keeping only
  the (W, H) pooled states; (2) the head and loss on them with a graph, which gives the loss
  gradient for each window's state; (3) every slice forward again with a graph, and backward of
  ``states . gradient`` -- the same parameter gradients as one forward over all windows, with the
  activations of one slice alive at a time. Each slice's dropout masks are replayed (its RNG state
  saved in (1), restored in (3)), so (3) differentiates the forward whose states (2) used.

Memory is bounded by the budget, whatever the text's length, for about one extra forward pass of the
long texts only. Training uses it in a single process; with several processes the batch runs whole
(the gradient hooks of DDP/FSDP expect one forward per backward).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import torch

__all__ = ["over_budget", "window_slices", "sliced_logits", "sliced_backward", "gradcache_backward", "torch_rng_state",
           "replayed_rng"]


def over_budget(batch: dict[str, Any], budget: int) -> bool:
    """A windowed batch of more padded tokens than ``budget`` (and more than one window): training
    plans windowed texts by their widest window, so a batch of several is usually one; in scoring, a
    text alone past the budget (or near it, with its last window's padding)."""
    return "window_example" in batch and batch["input_ids"].numel() > budget and batch["input_ids"].shape[0] > 1


def window_slices(batch: dict[str, Any], budget: int) -> list[dict[str, Any]]:
    """The batch's rows (one window each) cut into consecutive slices of at most ``budget`` padded
    tokens (at least one row): sub-batches whose groups are their own windows, 0..W_slice-1."""
    rows, width = batch["input_ids"].shape
    per_slice = max(1, budget // width)
    slices = []
    for a in range(0, rows, per_slice):
        b = min(rows, a + per_slice)
        example_ids = batch["example_ids"][a:b]
        slices.append(dict(input_ids=batch["input_ids"][a:b], segment_ids=batch["segment_ids"][a:b],
                           position_ids=batch["position_ids"][a:b],
                           example_ids=torch.where(example_ids >= 0, example_ids - a, example_ids),
                           num_examples=b - a))
    return slices


@torch.no_grad()
def sliced_logits(model, batch: dict[str, Any], budget: int) -> torch.Tensor:
    """(texts, L) logits of a windowed batch, its windows run a slice at a time."""
    states = torch.cat([model.pooled_states(part) for part in window_slices(batch, budget)])
    return model.score_states(states, batch)


def torch_rng_state(device: torch.device) -> tuple:
    """Torch's generators only (checkpoint.rng_state also holds Python's ``random``, which restoring
    here would rewind for the rest of the loop); fork_rng puts them back after each replay."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


@contextmanager
def replayed_rng(state: tuple, device: torch.device):
    """Torch's generators set to ``state`` (``torch_rng_state``'s) for a replayed forward, put back after it."""
    cpu_state, cuda_state = state
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)
        yield


def sliced_backward(model, batch: dict[str, Any], budget: int, backward: Callable[[torch.Tensor], None],
                    scale: float = 1.0, autocast: Callable[[], Any] = nullcontext) -> torch.Tensor:
    """Accumulate into the parameters' ``.grad`` the gradient of ``scale`` x the batch's loss, a
    slice of windows at a time (module doc); ``backward`` is the loss's backward (Accelerate's, for
    its loss scaling). Returns the loss (detached)."""
    parts = window_slices(batch, budget)
    return gradcache_backward(model, batch, lambda: (model.pooled_states(part) for part in parts), None, backward,
                              scale, autocast)


def gradcache_backward(model, batch: dict[str, Any], run_parts: Callable[[], Iterator[torch.Tensor]],
                       order: torch.Tensor | None, backward: Callable[[torch.Tensor], None], scale: float = 1.0,
                       autocast: Callable[[], Any] = nullcontext) -> torch.Tensor:
    """(1)-(3) of the module doc for any cut of a batch's windows into parts: ``run_parts()`` yields
    each part's (n, H) pooled states in turn (the forward runs inside ``next``, so each part's RNG
    state is taken just before it and replayed in (3)); ``order``: the batch rows the yielded states
    belong to, concatenated (None: the rows in order). Returns the loss (detached)."""
    device = model.device
    rng, states = [], []
    with torch.no_grad():  # (1) states only
        parts = run_parts()
        while True:
            rng.append(torch_rng_state(device))
            with autocast():
                part_states = next(parts, None)
            if part_states is None:
                rng.pop()
                break
            states.append(part_states)
    cached = torch.cat(states).detach().requires_grad_()
    rows = cached if order is None else cached[torch.argsort(order.to(cached.device))]
    with autocast():  # (2) head and loss: gradients of the head and of every window's state
        logits = model.score_states(rows, batch)
    loss = model.loss(logits, batch)
    backward(loss * scale)
    grad = cached.grad  # already carries any loss scaling `backward` applied
    start = 0
    parts = run_parts()
    for state, size in zip(rng, [len(part) for part in states]):  # (3) each part again
        with replayed_rng(state, device):
            # a part none of whose states reach the loss (window_pooling=last: windows before a
            # text's last) still runs -- a later part may read its memory -- but without a graph
            part_grad = grad[start:start + size]
            needed = bool(part_grad.any())
            with autocast(), (nullcontext() if needed else torch.no_grad()):
                part_states = next(parts)
        if needed:
            part_states.backward(part_grad.to(part_states.dtype))
        start += size
    return loss.detach()
