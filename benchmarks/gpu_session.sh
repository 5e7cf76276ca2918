#!/usr/bin/env bash
# One device lease (~8 min on an H100/H200): the GPU rows of docs/BENCHMARKS.md. Random weights of the real
# Llama-2-7B / Mistral-7B shapes in bf16 (speed does not depend on the values), log-normal lengths (mean 25).
# Run from the repository root on the GPU machine:  OUT=/some/dir bash benchmarks/gpu_session.sh
set -u
export PYTHONPATH="$PWD/src:$PWD/benchmarks" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-bench_out/gpu}; mkdir -p "$OUT"; W=/tmp/lt_models
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch,transformers,peft,accelerate;print(torch.__version__,transformers.__version__,peft.__version__,accelerate.__version__)" >> "$OUT/gpu.txt"
T="python3 benchmarks/throughput.py --device cuda --steps 160 --warmup 5 --work $W"
run() { name=$1; shift; echo "=== $name $*"; timeout 240 $T "$@" --out "$OUT/$name.json" 2>&1 | tail -8; }
{
run llama_bucketed --arch llama-2-7b --batching bucketed
run llama_packed --arch llama-2-7b --batching packed --stock-from "$OUT/llama_bucketed.json"
run llama_packed_unmask --arch llama-2-7b --batching packed --unmask all --stock-from "$OUT/llama_bucketed.json"
run llama_bucketed_b256 --arch llama-2-7b --batching bucketed --batch-size 256 --max-tokens 8192 --infer-tokens 16384 --stock-from "$OUT/llama_bucketed.json"
rm -rf $W/llama-2-7b
run mistral_bucketed --arch mistral-7b --batching bucketed
} 2>&1 | tee "$OUT/log.txt"
