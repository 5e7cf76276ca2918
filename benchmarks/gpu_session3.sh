#!/usr/bin/env bash
# Prepared GPU script (what the CPU machine cannot check). Run from the repo root through the device tool:
#   cp ../shared/data/sst2/dev.tsv gpu_texts.tsv   # the device has no ../shared; delete the copy afterwards
#   run(command="bash benchmarks/gpu_session3.sh", carry=[".whl"], timeout_s=540)
# 1. serve_load on the GPU (issue 12): micro-batched vs one request at a time, 1/4/16/64 clients, a
#    random-weight Llama-2-7B-shape run (fastapi/uvicorn/httpx and their dependencies from .whl/)
# 2. the GPU tests: FSDP2 through `accelerate launch` writes a whole run; QLoRA 4-bit training; the two
#    torchrun tests (those run on CPUs with gloo, GPUs hidden)
# The device has torch/transformers/peft/accelerate/pytest and no registry. .whl/ (git-ignored) is filled with
#   pip download fastapi uvicorn httpx platformdirs typing_extensions --python-version 3.12 \
#       --only-binary=:all: --platform manylinux2014_x86_64 -d .whl
#   pip download bitsandbytes --no-deps --python-version 3.12 --only-binary=:all: -d .whl
# Session 9 (H200): the four GPU tests passed; serve_load failed to start the server (fastapi 0.165 needs
# opentelemetry-api, not yet in .whl then; installing with `pip` instead of `python3 -m pip` also missed
# the venv's torch).
set -u
export PYTHONPATH="$PWD/src:$PWD/benchmarks" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-bench_out/gpu}; mkdir -p "$OUT"
{
python3 --version; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m pip install -q --no-index --find-links .whl fastapi uvicorn httpx platformdirs typing_extensions 2>&1 | grep -v WARNING | tail -2
python3 -m pip install -q --no-index --no-deps --find-links .whl bitsandbytes 2>&1 | grep -v WARNING | tail -2
python3 -c "import fastapi, uvicorn, httpx, bitsandbytes; print('deps ok')"
echo "=== serve_load on the GPU"
python3 -c "from types import SimpleNamespace as N; from throughput import model_source
print(model_source(N(arch='llama-2-7b', work='/tmp/lt_models', device='cuda')))" > /tmp/model_dir 2>/dev/null
timeout 240 python3 benchmarks/serve_load.py --model "$(tail -1 /tmp/model_dir)" --seconds 8 --clients 1,4,16,64 \
    --texts gpu_texts.tsv --out /tmp/serve_load 2>&1 | grep -v "it/s" | tail -14
echo "=== GPU tests"
timeout 200 python3 -m pytest -q -rs -p no:cacheprovider tests/test_sharding.py tests/test_distributed.py \
    -k "fsdp2 or qlora or two_processes_train" 2>&1 | grep -E "Error|FAILED|PASSED|passed|failed|SKIPPED" | head -30
} 2>&1 | tee "$OUT/log3.txt"
