"""What a LoRA dropout costs on this CPU, and what a cheaper draw of the same mask would save.

peft's LoRA applies ``nn.Dropout`` to each adapter's input (q, k, v, o; every linear layer for the
token task): a fresh Bernoulli(1 - p) mask over a (tokens, hidden) tensor, forward and backward.
This times, side by side in one process and alternating the variants each round, forward + backward
of that dropout on the training shape (tokens x 576, SmolLM2-135M's hidden size) against the LoRA A
matmul it feeds:

    .venv/bin/python benchmarks/dropout_cost.py [--tokens 640] [--threads 1] [--rounds 5]

Variants (each keeps an element with probability 1 - p and scales it by 1 / (1 - p)):
  F.dropout            what nn.Dropout runs (bernoulli_ into a float mask, then multiply)
  where(rand >= p)     one uniform draw per element, one select
  16-bit draw          one 64-bit integer draw per four elements, each element's 16 bits against
                       round(p * 65536) (the FastDropout tried in commit 1d3a03f, not kept)
  FastDropout          labeltune's since 0.8.2 (lora_dropout.py): the same quarter of the draws, 15
                       bits an element, the mask built by a clamp instead of a comparison
and each on fp32 input (what autocast hands the adapter today) and on bf16 input.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from labeltune.lora_dropout import FastDropout


def sixteen_bit_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout with p rounded to a multiple of 1/65536, its mask from a quarter of the draws."""
    k = round(p * 65536)
    n = x.numel()
    bits = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64)
    keep = bits.view(torch.int16)[:n].view(x.shape) >= k - 32768  # P(keep) = 1 - k / 65536
    mask = torch.where(keep, torch.tensor(65536 / (65536 - k), dtype=x.dtype), torch.tensor(0.0, dtype=x.dtype))
    return x * mask


def _time(fn, x, reps: int) -> float:
    """Mean ms of forward + backward of ``fn`` on a leaf copy of ``x``."""
    t0 = time.perf_counter()
    for _ in range(reps):
        leaf = x.detach().requires_grad_()
        fn(leaf).sum().backward()
    return (time.perf_counter() - t0) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=640, help="tokens in a batch (16 sentences x 40)")
    ap.add_argument("--hidden", type=int, default=576)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--p", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    p, scale = args.p, 1.0 / (1.0 - args.p)
    fast = FastDropout(p)
    x32 = torch.randn(args.tokens, args.hidden)
    a = torch.randn(args.rank, args.hidden, dtype=torch.bfloat16, requires_grad=True)
    variants = {
        "no dropout (x * 1: the harness)": (lambda t: t * 1.0, x32),
        "F.dropout, fp32": (lambda t: F.dropout(t, p, True), x32),
        "F.dropout, bf16": (lambda t: F.dropout(t, p, True), x32.bfloat16()),
        "where(rand >= p), fp32": (lambda t: torch.where(torch.rand_like(t) >= p, t * scale, 0.0), x32),
        "where(rand >= p), bf16": (lambda t: torch.where(torch.rand_like(t) >= p, t * scale, 0.0), x32.bfloat16()),
        "16-bit draw, fp32": (lambda t: sixteen_bit_dropout(t, p), x32),
        "16-bit draw, bf16": (lambda t: sixteen_bit_dropout(t, p), x32.bfloat16()),
        "FastDropout, fp32": (fast.train(), x32),
        "FastDropout, bf16": (fast, x32.bfloat16()),
        f"LoRA A matmul (bf16, rank {args.rank})": (lambda t: t @ a.t(), x32.bfloat16()),
        "576x576 matmul (bf16)": (lambda t: t @ t.new_ones(args.hidden, args.hidden), x32.bfloat16()),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, (fn, x) in variants.items():
            _time(fn, x, 5)  # warm-up
            times[name].append(_time(fn, x, args.reps))
    base = statistics.median(times["F.dropout, fp32"])
    print(f"{args.tokens} x {args.hidden}, p={p}, {args.threads} thread(s); forward + backward, median of "
          f"{args.rounds} rounds of {args.reps}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:34s} {m:7.3f} ms   {m / base:5.2f}x F.dropout fp32")


if __name__ == "__main__":
    main()
