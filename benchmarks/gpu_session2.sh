#!/usr/bin/env bash
# Second lease of a session: inference measured over 4,000 examples after a warm-up, and the memory/speed
# trade-off of gradient checkpointing at larger token budgets. Run as gpu_session.sh.
set -u
export PYTHONPATH="$PWD/src:$PWD/benchmarks" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-bench_out/gpu}; mkdir -p "$OUT"; W=/tmp/lt_models
T="python3 benchmarks/throughput.py --device cuda --arch llama-2-7b --examples 8000 --infer-examples 4000 --steps 320 --warmup 5 --work $W"
run() { name=$1; shift; echo "=== $name $*"; timeout 200 $T "$@" --out "$OUT/$name.json" 2>&1 | tail -6; }
{
run l_packed_4k --batching packed --max-tokens 4096 --infer-tokens 8192
run l_packed_ckpt_8k --batching packed --checkpointing --batch-size 256 --max-tokens 8192 --infer-tokens 16384 --stock-from "$OUT/l_packed_4k.json"
run l_bucketed_ckpt_8k --batching bucketed --checkpointing --batch-size 256 --max-tokens 8192 --infer-tokens 16384 --stock-from "$OUT/l_packed_4k.json"
} 2>&1 | tee "$OUT/log2.txt"
