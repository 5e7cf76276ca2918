"""Run a prefix shared by every row of a batch once, and continue each row from its keys and values.

Used by ``LabelModel`` (the template's prefix: system turn, ``<|im_start|>user``) and by the prompting
baseline (system turn, k-shot demonstrations, instruction). Exact under a causal mask, where the
prefix never sees what follows; gradients reach the weights through the cache
(``batch_repeat_interleave`` sums them back), so training may use it too.
"""

from __future__ import annotations

import copy
import functools
import inspect

import torch

__all__ = ["SharedPrefix", "cache_kwarg", "output_cache"]


@functools.lru_cache(maxsize=None)
def _cache_argument(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def cache_kwarg(model, cache) -> dict:
    """``{name: cache}`` for a model's forward: transformers renamed ``past_key_values`` to ``cache``
    (5.2x); the GPU machine's 5.17 knows only the old name. (The name is looked up once per class:
    LabelModel asks on every batch.)"""
    return {_cache_argument(type(model)): cache}


def output_cache(output):
    """The KV cache a forward returned, under either name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


class SharedPrefix:
    """``model`` run once on ``prefix_ids`` (1, P); ``run`` continues B rows after it.

    ``signature_of``: the transformers model whose forward names the cache argument (the base model
    under PEFT's wrapper). ``reusable``: keep the prefix's cache for several batches (copied per
    batch); else it is consumed by the first ``run`` (no copy, gradients flow through it).
    """

    def __init__(self, model, prefix_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                 signature_of=None, reusable: bool = True):
        self.model, self.length, self.reusable = model, prefix_ids.shape[1], reusable
        self.cache = output_cache(model(input_ids=prefix_ids, position_ids=position_ids, use_cache=True))
        self._signature_of = signature_of or model

    def repeated(self, rows: int):
        """The prefix's cache for ``rows`` rows (a copy when reusable)."""
        cache = copy.deepcopy(self.cache) if self.reusable else self.cache
        cache.batch_repeat_interleave(rows)
        return cache

    def generate_kwargs(self, rows: int) -> dict:
        """``{cache argument: the prefix's cache for rows}`` for ``model.generate`` on inputs that start
        with the prefix's tokens."""
        return cache_kwarg(self.model, self.repeated(rows))

    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
            cache=None, cached_mask: torch.Tensor | None = None, **kwargs):
        """Forward of (B, T) tokens after the prefix. ``attention_mask`` (B, T) covers the new tokens;
        ``position_ids`` count from the prefix's length. ``cache``: continue from a cache already
        repeated and extended by earlier tokens (default: the prefix's, repeated), whose visible
        tokens ``cached_mask`` (B, cache length) gives (default: all of them)."""
        cache = cache if cache is not None else self.repeated(input_ids.shape[0])
        if cached_mask is None:
            cached_mask = attention_mask.new_ones((input_ids.shape[0], cache.get_seq_length()))
        mask = torch.cat([cached_mask, attention_mask], 1)
        return self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                          **cache_kwarg(self._signature_of, cache), **kwargs)
