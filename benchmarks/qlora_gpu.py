"""QLoRA on a GPU (issue 13): a Llama-2-7B-shaped model (random bf16 weights: memory does not depend on the
values) trained by labeltune with --quantize 4bit; peak GPU memory, step time, loss, prediction, and the
full-precision export refusal-free path.

    python3 benchmarks/qlora_gpu.py --arch llama-2-7b --quantize 4bit     (GPU machine, bitsandbytes)
    .venv/bin/python benchmarks/qlora_gpu.py --arch tiny-llama --quantize none --device cpu   (smoke test)
"""

from __future__ import annotations

import argparse
import json
import random
import time
from types import SimpleNamespace

import torch

from throughput import model_source


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="llama-2-7b")
    ap.add_argument("--quantize", default="4bit")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--work", default="/tmp/lt_models")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import transformers

    import labeltune

    transformers.utils.logging.set_verbosity_error()
    src = model_source(SimpleNamespace(arch=args.arch, work=args.work, device=args.device))
    rng = random.Random(0)
    rows = [{"text": " ".join(f"t{rng.randrange(3, 30000)}" for _ in range(rng.randint(10, 40))), "label": str(i % 2)}
            for i in range(512)]
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model = labeltune.train(rows, rows[:64], model=src, quantize=args.quantize, epochs=1, batch_size=16,
                            max_steps=args.steps, calibration="none", progress=False, gradient_checkpointing=True)
    train_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
    losses = [e["loss"] for e in model.train_log if e["event"] == "train"]
    kinds = sorted({type(m).__name__ for m in model.base_model.modules() if "Linear" in type(m).__name__})
    res = {"arch": args.arch, "quantize": args.quantize, "steps": model.metrics.get("steps"), "train_s_incl_load": train_s,
           "peak_gpu_gib": peak, "losses": losses, "eval_accuracy": model.metrics.get("accuracy"),
           "linear_kinds": kinds, "head_dtype": str(model.head.score.weight.dtype),
           "prediction": model.predict(rows[0]["text"]),
           "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"}
    print(json.dumps(res, indent=1))
    if args.out:
        open(args.out, "w").write(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
