#!/usr/bin/env bash
# Third GPU script (prepared 2026-11-28; no device that session): what the CPU machine cannot check.
#   run(command="bash benchmarks/gpu_session3.sh", carry=[".whl"], timeout_s=540)
# 1. the GPU-only tests: FSDP2 training through `accelerate launch` writes a whole run; QLoRA 4-bit
#    training (tests/test_sharding.py, tests/test_distributed.py; pytest and bitsandbytes from .whl/)
# 2. serve_load on the GPU (issue 12): micro-batched vs one request at a time, 1/4/16/64 clients, a
#    random-weight Llama-2-7B-shape run (fastapi/uvicorn/pydantic from .whl/)
# The device has torch/transformers/peft/accelerate and no registry; .whl/ holds the rest
# (pip download ... --python-version 3.10-3.13, see the session note).
set -u
export PYTHONPATH="$PWD/src:$PWD/benchmarks" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-bench_out/gpu}; mkdir -p "$OUT"
{
python3 --version; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
pip install -q --no-index --find-links .whl pytest fastapi uvicorn bitsandbytes seqeval platformdirs 2>&1 | tail -2
echo "=== GPU tests"
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_sharding.py tests/test_distributed.py -k "fsdp2 or qlora or two_processes_train" 2>&1 | tail -15
echo "=== serve_load on the GPU"
python3 -c "from types import SimpleNamespace as N; from throughput import model_source
print(model_source(N(arch='llama-2-7b', work='/tmp/lt_models', device='cuda')))" > /tmp/model_dir
timeout 240 python3 benchmarks/serve_load.py --model "$(tail -1 /tmp/model_dir)" --seconds 10 --clients 1,4,16,64 \
    --out "$OUT/serve_load" 2>&1 | tail -14
} 2>&1 | tee "$OUT/log3.txt"
