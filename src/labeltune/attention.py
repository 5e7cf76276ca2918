"""The one place that switches decoder layers to bidirectional attention.

How: transformers' own extension points, no copied model files. We register attention functions
``labeltune_sdpa`` and ``labeltune_eager`` (``AttentionInterface``) plus their mask builders
(``AttentionMaskInterface``). A model whose ``config._attn_implementation`` names one of them calls our
function in every layer with ``module.layer_idx`` and the keyword arguments given to the model's
forward. When that forward carries a :class:`MaskPlan` we build the layer's mask ourselves from
per-token segment ids and positions:

    allowed[b, i, j] = same example (segment) and j is a real token
                       and (j <= i            if layer is causal)
                       and |i - j| < window   (sliding layers: two-sided when bidirectional)

so padding stays masked in every layer, packed examples never see each other, and SDPA is always
called with an explicit mask and ``is_causal=False`` (a ``None`` mask would silently fall back to
causal). Without a plan the stock path runs unchanged, except that on a CPU under autocast both paths
compute SDPA in fp32 (far faster there than bf16).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

from .config import parse_unmask  # noqa: F401  (re-exported: the unmask syntax lives with the settings)
from .errors import ConfigError

__all__ = ["parse_unmask", "MaskPlan", "enable_labeltune_attention", "SUPPORTED_FAMILIES", "SUPPORTED_BACKENDS"]

# Families whose attention modules dispatch through AttentionInterface with layer_idx set and whose
# sliding-window layers pass ``sliding_window`` to the attention function (checked by the tests).
SUPPORTED_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "phi3")
SUPPORTED_BACKENDS = ("sdpa", "eager")


@dataclass
class MaskPlan:
    """Per-forward masking description, handed to every layer through the model's kwargs.

    segment_ids: (B, T) int, 0 for padding, 1.. for the examples packed in a row.
    positions:   (B, T) int, position of each token inside its own example.
    bidirectional: layer indices that attend both ways.
    """

    segment_ids: torch.Tensor
    positions: torch.Tensor
    bidirectional: frozenset[int]
    _cache: dict = field(default_factory=dict, repr=False)

    def mask(self, causal: bool, window: int | None, dtype: torch.dtype) -> torch.Tensor:
        key = (causal, window, dtype)
        if key not in self._cache:
            seg, pos = self.segment_ids, self.positions
            allowed = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] > 0)  # (B, T, T)
            delta = pos[:, :, None] - pos[:, None, :]  # i - j
            if causal:
                allowed &= delta >= 0
            if window is not None:
                allowed &= (delta < window) if causal else (delta.abs() < window)
            # a pad query attends to itself only: finite softmax, no NaN in any backend
            eye = torch.eye(seg.shape[1], dtype=torch.bool, device=seg.device)
            allowed |= eye & (seg == 0)[:, :, None]
            additive = torch.zeros(allowed.shape, dtype=dtype, device=seg.device)
            additive.masked_fill_(~allowed, torch.finfo(dtype).min)
            self._cache[key] = additive[:, None]  # (B, 1, T, T)
        return self._cache[key]


def _eager_of(module) -> callable:
    # each modeling file defines its own eager function (Gemma2's adds soft-capping): use that one
    fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if fn is None:
        raise ConfigError(f"{type(module).__name__} has no eager_attention_forward; use attn_implementation=sdpa")
    return fn


def _sdpa_groups_itself(module, mask, kwargs) -> bool:
    """Grouped-query attention (fewer K/V heads than query heads) with a mask: transformers repeats K/V
    to every query head before SDPA whenever a mask is given (labeltune always gives one); SDPA's own
    ``enable_gqa`` reads each K/V head for its group in place (fwd+bwd of 16 rows x 40 tokens on a CPU
    thread: 9.2 -> 5.5 ms one day, 9.2 -> 8.3 the next; benchmarks/sdpa_cpu.py --gqa). Only where
    nothing else changes the scores (no soft-capping, position bias or attention sinks)."""
    return (mask is not None and getattr(module, "num_key_value_groups", 1) > 1
            and not any(kwargs.get(k) is not None for k in ("softcap", "position_bias", "s_aux")))


def _sdpa_gqa(query, key, value, mask, dropout=0.0, scaling=None, **_):
    # query (B, H, T, D), key/value (B, H/groups, T, D), mask (B, 1, T, T) additive -> (B, T, H, D)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling,
        is_causal=False, enable_gqa=True)
    return out.transpose(1, 2).contiguous()


def _make_attention(backend: str):
    def attention(module, query, key, value, attention_mask, **kwargs):
        plan: MaskPlan | None = kwargs.pop("labeltune_plan", None)
        base = sdpa_attention_forward if backend == "sdpa" else _eager_of(module)
        # CPU autocast would run SDPA in bf16, whose CPU kernels are far slower than fp32's, backward
        # above all (forward+backward of 16 rows: 13.5 vs 2.7 ms at 24 tokens, 67 vs 39 ms at 128;
        # benchmarks/sdpa_cpu.py): there, compute attention in fp32 with autocast off (more precise, too)
        in_fp32 = backend == "sdpa" and query.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        if plan is None:
            mask = attention_mask
            if in_fp32 and mask is not None and mask.is_floating_point():  # additive; a bool mask stays bool
                mask = mask.float()
        else:
            causal = module.layer_idx not in plan.bidirectional
            # built (and cached by the plan) once in the dtype SDPA gets, not converted in every layer
            mask = plan.mask(causal, kwargs.get("sliding_window"), torch.float32 if in_fp32 else query.dtype)
            kwargs["is_causal"] = False
        if in_fp32:
            with torch.autocast("cpu", enabled=False):
                if _sdpa_groups_itself(module, mask, kwargs):
                    out = _sdpa_gqa(query.float(), key.float(), value.float(), mask, **kwargs)
                    return out.to(query.dtype), None
                out, weights = base(module, query.float(), key.float(), value.float(), mask, **kwargs)
            return out.to(query.dtype), weights
        return base(module, query, key, value, mask, **kwargs)

    attention.__name__ = f"labeltune_{backend}_attention"
    return attention


_registered: list[str] = []


def _register() -> None:
    """Add labeltune's attention functions to transformers' registries: done on first use, not at
    import, and once (importing labeltune changes no global state)."""
    for backend in SUPPORTED_BACKENDS:
        if backend not in _registered:
            AttentionInterface.register(f"labeltune_{backend}", _make_attention(backend))
            AttentionMaskInterface.register(f"labeltune_{backend}", sdpa_mask if backend == "sdpa" else eager_mask)
            _registered.append(backend)


def check_supported(config, backend: str) -> None:
    family = getattr(config, "model_type", "?")
    if family not in SUPPORTED_FAMILIES:
        raise ConfigError(
            f"model family {family!r} is not supported for unmasking/packing; supported: "
            f"{', '.join(SUPPORTED_FAMILIES)} (unmask=none with batching=padded|bucketed works with any decoder)"
        )
    if backend not in SUPPORTED_BACKENDS:
        raise ConfigError(f"attention backend {backend!r} is not supported; supported: {', '.join(SUPPORTED_BACKENDS)}")


def enable_labeltune_attention(model, backend: str) -> None:
    """Route ``model``'s attention through labeltune's function (per instance: other models untouched)."""
    check_supported(model.config, backend)
    _register()
    model.set_attn_implementation(f"labeltune_{backend}")
