"""Why labeltune computes attention in fp32 under CPU autocast: SDPA forward+backward on a CPU, bf16
(what autocast would run) against fp32, for both of torch's CPU kernels, at the shapes of SmolLM2-135M
(9 query heads, head dim 64) and a training batch of 16 rows.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sdpa_cpu.py [--lengths 24,48,128,512]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sdpa_cpu.py --gqa --lengths 40,128 --batch 16

Prints milliseconds per forward+backward for each (dtype, length, kernel), the mask additive as
labeltune's MaskPlan builds it (the last 5 tokens of every row are padding). ``--gqa``: fp32 instead,
SmolLM2's 3 KV heads either repeated to the 9 query heads (what transformers does when a mask is given)
or left grouped (``enable_gqa=True``), median over alternating rounds; and whether either path gives a
row the same bits alone as padded by 20 masked tokens.
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


def gqa(lengths: list[int], batch: int, reps: int, rounds: int = 5) -> None:
    import statistics

    heads, kv_heads, dim = 9, 3, 64

    from transformers.models.llama.modeling_llama import repeat_kv

    def repeat(x):  # what transformers does before SDPA when a mask is given: (B, 3, T, D) -> (B, 9, T, D)
        return repeat_kv(x, heads // kv_heads)

    paths = {"repeated": lambda q, k, v, m: F.scaled_dot_product_attention(q, repeat(k), repeat(v), attn_mask=m),
             "grouped": lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True)}
    for length in lengths:
        q = torch.randn(batch, heads, length, dim, requires_grad=True)
        k, v = (torch.randn(batch, kv_heads, length, dim, requires_grad=True) for _ in range(2))
        mask = torch.zeros(batch, 1, length, length)
        mask[..., length - 5:] = torch.finfo(torch.float32).min
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, fn in paths.items():
                fn(q, k, v, mask).sum().backward()  # warm-up
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn(q, k, v, mask).sum().backward()
                times[name].append((time.perf_counter() - t0) / reps * 1e3)
        row = {"length": length, "batch": batch, **{f"{n}_ms_fwd_bwd": round(statistics.median(t), 2)
                                                    for n, t in times.items()}}
        with torch.no_grad():
            one = [x[:1].detach() for x in (q, k, v)]
            padded = [torch.cat([x, torch.randn(1, x.shape[1], 20, dim)], 2) for x in one]
            pad_mask = torch.zeros(1, 1, length + 20, length + 20)
            pad_mask[..., length:] = torch.finfo(torch.float32).min
            for name, fn in paths.items():
                alone = fn(*one, torch.zeros(1, 1, length, length))
                row[f"{name}_padding_changes_by"] = float((alone - fn(*padded, pad_mask)[:, :, :length]).abs().max())
            row["grouped_equals_repeated"] = torch.equal(paths["grouped"](q, k, v, mask), paths["repeated"](q, k, v, mask))
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="24,48,128")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--gqa", action="store_true", help="grouped vs repeated K/V (fp32), and padding invariance")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.gqa:
        return gqa([int(x) for x in args.lengths.split(",")], args.batch, max(1, args.reps // 2))
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
