"""Where and in which mixed precision a run computes: one rule for training and inference."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

__all__ = ["cpu_has_native_bf16", "resolve_mixed_precision", "autocast_for", "resolve_device"]


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run natively (measured 1.7x fp32 training speed here)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_mixed_precision(setting: str, device: str | None = None) -> str:
    """auto: bf16 where ``device`` (default: cuda when present, else cpu) computes it natively
    (recent GPUs, CPUs with AVX512-BF16/AMX), else ``no`` (fp32). Other settings pass through."""
    if setting != "auto":
        return setting
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if device == "cpu" and cpu_has_native_bf16() else "no"


def autocast_for(setting: str, device: torch.device):
    """The autocast context of ``setting`` on ``device``; a no-op context for ``no``. An explicit
    bf16/fp16 setting is honoured as given, also on a CPU without native bf16 (slower there)."""
    mode = resolve_mixed_precision(setting, device.type)
    if mode == "no":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if mode == "bf16" else torch.float16)


def resolve_device(device: str | None) -> str:
    """``auto``/None: the GPU when there is one, else the CPU; anything else as given (cuda:1, cpu)."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
