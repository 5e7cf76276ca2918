"""Pooling over groups of tokens, linear label heads and their losses.

Every pooling is a *group* reduction: ``group_ids`` (B, T) gives each token the index of the example
(sequence task) or word/unit (token task) it belongs to, -1 for padding. One code path therefore
serves right or left padding, pad == eos, and several examples packed into one row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["group_pool", "SequenceHead", "TokenHead", "label_loss"]


def group_pool(hidden: torch.Tensor, group_ids: torch.Tensor, num_groups: int, how: str) -> torch.Tensor:
    """(B, T, H) states, (B, T) group ids in [0, G) or -1 -> (G, H) pooled states.

    last: the state at the highest position of each group (the last real token);
    mean / max: over the group's tokens only, padding never enters.
    """
    h = hidden.reshape(-1, hidden.shape[-1])  # (B*T, H)
    g = group_ids.reshape(-1)
    real = g >= 0
    h, g = h[real], g[real]  # (N, H), (N,)
    if how == "last":
        flat_pos = torch.arange(group_ids.numel(), device=g.device)[real]
        last = torch.full((num_groups,), -1, dtype=torch.long, device=g.device)
        last = last.scatter_reduce(0, g, flat_pos, reduce="amax", include_self=True)
        # map flat positions back to rows of the filtered (N, H) matrix
        row_of = torch.full((group_ids.numel(),), -1, dtype=torch.long, device=g.device)
        row_of[flat_pos] = torch.arange(len(flat_pos), device=g.device)
        return h[row_of[last]]
    if how == "mean":
        total = h.new_zeros(num_groups, h.shape[-1]).index_add_(0, g, h)
        count = torch.bincount(g, minlength=num_groups).clamp_min(1).to(h.dtype)
        return total / count[:, None]
    if how == "max":
        index = g[:, None].expand_as(h)
        return h.new_full((num_groups, h.shape[-1]), float("-inf")).scatter_reduce(0, index, h, "amax")
    raise ValueError(f"unknown pooling {how!r}")


def attend_windows(states: torch.Tensor, text_of: torch.Tensor, num_texts: int, query: torch.Tensor) -> torch.Tensor:
    """(W, H) window states, (W,) text index -> (texts, H): a softmax over each text's windows of
    ``states @ query`` weighs them (a zero query gives the mean)."""
    s = states.float() @ query.float()  # (W,)
    peak = s.new_full((num_texts,), float("-inf")).scatter_reduce(0, text_of, s, "amax")
    e = torch.exp(s - peak[text_of])
    weights = e / s.new_zeros(num_texts).index_add_(0, text_of, e)[text_of]  # (W,), sums to 1 per text
    return states.new_zeros(num_texts, states.shape[-1]).index_add_(0, text_of, (weights[:, None] * states.float()).to(states.dtype))


class SequenceHead(nn.Module):
    """Pool each example's final states, then dropout + linear: (B, T, H) -> (E, num_labels)."""

    def __init__(self, hidden_size: int, num_labels: int, pooling: str, dropout: float = 0.0, bias: bool = True,
                 window_attention: bool = False):
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(hidden_size, num_labels, bias=bias)
        nn.init.normal_(self.score.weight, std=hidden_size**-0.5 * 0.1)
        if bias:
            nn.init.zeros_(self.score.bias)
        if window_attention:  # a learned query over a text's windows; zero: the mean at step 0
            self.window_query = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, hidden, group_ids, num_groups, window_example=None, num_texts: int = 0, combine: str = "mean"):
        """``window_example`` (W,): the groups are windows of longer texts; their pooled states are
        combined per text (mean, max, attention, or last: a text's windows are consecutive groups in
        order, so the group reduction "last" picks its last window) before the linear layer, so a text
        is scored as one."""
        return self.score_pooled(self.pool(hidden, group_ids, num_groups), window_example, num_texts, combine)

    def pool(self, hidden, group_ids, num_groups) -> torch.Tensor:
        """(B, T, H) -> (G, H): each group's state (an example's, a window's or a unit's)."""
        return group_pool(hidden, group_ids, num_groups, self.pooling)

    def score_pooled(self, pooled, window_example=None, num_texts: int = 0, combine: str = "mean") -> torch.Tensor:
        """(G, H) pooled states -> (E, num_labels); windows (``window_example`` (W,) -> their text) are
        first combined per text: the same group reduction, one level up."""
        if window_example is not None:
            text_of = window_example.to(pooled.device)
            if combine == "attention":
                pooled = attend_windows(pooled, text_of, num_texts, self.window_query)
            else:
                pooled = group_pool(pooled[None], text_of[None], num_texts, combine)
        return self.score(self.dropout(pooled.to(self.score.weight.dtype)))


class TokenHead(SequenceHead):
    """A label per unit (word or sub-word): mean over the unit's tokens (one token for first/last)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1, bias: bool = True):
        super().__init__(hidden_size, num_labels, pooling="mean", dropout=dropout, bias=bias)


def label_loss(logits, labels, problem_type: str, class_weights: torch.Tensor | None = None, focal_gamma: float = 0.0):
    """CE (single label; -100 ignored; with ``focal_gamma`` > 0 the focal loss, each term times
    (1 - p_true)^gamma, averaged as CE is: over the targets, or their class weights), BCE (multi label,
    labels (E, L) in {0,1}) or MSE (regression)."""
    if problem_type == "single_label":
        w = class_weights.to(logits.device, torch.float32) if class_weights is not None else None
        if not focal_gamma:
            return F.cross_entropy(logits.float(), labels, weight=w, ignore_index=-100)
        keep = labels != -100
        logp = F.log_softmax(logits.float()[keep], dim=-1)  # (N, L)
        target = labels[keep]
        logp_true = logp.gather(1, target[:, None])[:, 0]  # (N,)
        terms = -((1 - logp_true.exp()) ** focal_gamma) * logp_true
        weight = w[target] if w is not None else torch.ones_like(terms)
        return (weight * terms).sum() / weight.sum().clamp_min(1e-12)
    if problem_type == "multi_label":
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    if problem_type == "regression":
        return F.mse_loss(logits.float().squeeze(-1), labels.float())
    raise ValueError(f"unknown problem_type {problem_type!r}")
