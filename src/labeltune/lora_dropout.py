"""LoRA dropout that costs a quarter of a random draw per element on a CPU.

peft puts an ``nn.Dropout`` on the input of every adapted layer (q, k, v, o: four a layer; all seven
linear layers for the token task). On a CPU, PyTorch fills its Bernoulli mask one element at a time
from the Mersenne Twister -- a 64-bit draw turned into a double per element (its vectorised MKL path
is taken on Intel CPUs only) -- and that draw, not the mask's use, was ~20% of a training step on
this project's AMD machine (docs/BENCHMARKS.md, "Where the time goes").

``FastDropout`` draws one 64-bit integer per four elements and reads each element's 16 bits as a
uniform integer u in [0, 65536): an element is dropped when u < k, k = round(p * 65536), and the kept
ones are scaled by 65536 / (65536 - k). That is inverted dropout with p rounded to a multiple of
1/65536 (0.05 -> 0.0500031; the scale uses the rounded p, so the expectation is exactly x). It draws
from torch's default generator, so seeding, checkpoint RNG state and the replay of masks in
window_cache.py work as before. On other devices (CUDA's fused dropout is cheap) it is ``F.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FastDropout", "use_fast_lora_dropout"]

_LEVELS = 1 << 16  # 16 random bits per element


class FastDropout(nn.Dropout):
    """``nn.Dropout(p)`` with a cheaper mask on CPU tensors; same interface, same expectation."""

    def __init__(self, p: float = 0.5):
        super().__init__(p)
        self.drop_levels = round(p * _LEVELS)  # k: an element is dropped when its 16 bits are < k
        self.scale = _LEVELS / (_LEVELS - self.drop_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_levels == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        n = x.numel()
        # ceil(n / 4) 64-bit draws -> 4n int16 values in [-32768, 32768); u = value + 32768
        bits = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64)
        u16 = bits.view(torch.int16)[:n].view(x.shape)
        keep = u16 >= (self.drop_levels - _LEVELS // 2)  # (x.shape) bool, P(keep) = 1 - k / 65536
        # the mask as scale-or-0 in x's dtype: one pass fewer than x * keep * scale (saved for backward)
        mask = torch.where(keep, torch.tensor(self.scale, dtype=x.dtype), torch.tensor(0.0, dtype=x.dtype))
        return x * mask


def use_fast_lora_dropout(model: nn.Module) -> int:
    """Swap every LoRA dropout (peft's ``lora_dropout`` ModuleDicts) for a ``FastDropout`` of the same p;
    returns how many were swapped. Identity (p = 0) entries are left as they are."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if type(dropout) is nn.Dropout and dropout.p > 0:
                dropouts[name] = FastDropout(dropout.p)
                swapped += 1
    return swapped
