"""Why labeltune computes attention in fp32 under CPU autocast: SDPA forward+backward on a CPU, bf16
(what autocast would run) against fp32, for both of torch's CPU kernels, at the shapes of SmolLM2-135M
(9 query heads, head dim 64) and a training batch of 16 rows.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sdpa_cpu.py [--lengths 24,48,128,512]

Prints milliseconds per forward+backward for each (dtype, length, kernel), the mask additive as
labeltune's MaskPlan builds it (the last 5 tokens of every row are padding).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def timed(q, k, v, mask, backend, reps: int) -> float:
    with sdpa_kernel(backend):
        for i in range(reps + 2):  # two warm-up calls
            if i == 2:
                t0 = time.perf_counter()
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask).float().sum().backward()
    return (time.perf_counter() - t0) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="24,48,128")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for dtype in (torch.bfloat16, torch.float32):
        for length in [int(x) for x in args.lengths.split(",")]:
            shape = (args.batch, 9, length, 64)
            q, k, v = (torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3))
            mask = torch.zeros(args.batch, 1, length, length, dtype=dtype)
            mask[..., length - 5:] = torch.finfo(dtype).min
            for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("math", SDPBackend.MATH)):
                ms = timed(q, k, v, mask, backend, args.reps)
                rows.append({"dtype": str(dtype).removeprefix("torch."), "length": length, "kernel": name,
                             "ms_fwd_bwd": round(ms, 2)})
                print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
