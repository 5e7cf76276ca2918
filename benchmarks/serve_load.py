"""Load on `labeltune serve` over loopback: micro-batched vs one request at a time, side by side.

    .venv/bin/python benchmarks/serve_load.py [--seconds 20] [--clients 1,4,16,64]

The server is `labeltune serve` in a subprocess (the embedded SmolLM2-135M with a fresh head: speed
does not depend on the weights' values), started twice: with the default micro-batching
(--max-wait-ms 5) and with --batch-tokens 1 (each request its own forward pass). For each number of
concurrent clients, each client sends requests of 1-4 SST-2 dev sentences back to back for a fixed
time; prints requests/s, texts/s, p50/p99 latency and errors as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import SHARED, hardware

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_run(out: Path, model: str = "default") -> Path:
    """A run with a fresh head on ``model`` (the embedded SmolLM2 by default; on a GPU machine without
    it, a local model directory such as throughput.py's random-weight 7B)."""
    run = out / ("run" if model == "default" else "run-" + Path(model).name)
    if not (run / "config.json").exists():
        from labeltune import LabelModel, RunConfig
        from labeltune.data import LabelMap

        cfg = RunConfig.from_dict({"model": {"name": model}})
        LabelModel.from_config(cfg, LabelMap(["0", "1"])).save_pretrained(run, overwrite=True)
    return run


def start_server(run: Path, extra: list[str]):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "labeltune.cli", "serve", str(run), "--port", str(port), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not start")


def load(base: str, sentences: list[str], clients: int, seconds: float) -> dict:
    import httpx

    latencies, texts_done, errors = [], [0], [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(k: int):
        rng = random.Random(k)
        with httpx.Client(timeout=120) as http:
            while time.perf_counter() < stop:
                texts = rng.sample(sentences, rng.randint(1, 4))
                t0 = time.perf_counter()
                try:
                    ok = http.post(f"{base}/predict", json={"texts": texts}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(dt)
                        texts_done[0] += len(texts)
                    else:
                        errors[0] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()
    pct = (lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]) if latencies else (lambda q: 0)
    return {"requests_s": len(latencies) / wall, "texts_s": texts_done[0] / wall, "p50_ms": pct(0.5),
            "p99_ms": pct(0.99), "errors": errors[0], "requests": len(latencies)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out" / "serve_load")
    ap.add_argument("--model", default="default", help="decoder of the served run (default: the embedded SmolLM2)")
    ap.add_argument("--texts", type=Path, default=SHARED / "sst2" / "dev.tsv",
                    help="TSV whose first column holds the request sentences, header line first (default: SST-2 dev)")
    args = ap.parse_args()
    run = make_run(args.out, args.model)
    lines = args.texts.read_text().splitlines()[1:]
    sentences = [line.split("\t")[0] for line in lines]
    modes = {"micro-batched (5 ms)": [], "one request at a time": ["--batch-tokens", "1", "--max-wait-ms", "0"]}
    results = {}
    import httpx

    for mode, extra in modes.items():
        proc, base = start_server(run, extra)
        try:
            load(base, sentences, 4, 3)  # warm-up
            for n in map(int, args.clients.split(",")):
                before = httpx.get(f"{base}/info").json()["served"]
                results[(mode, n)] = load(base, sentences, n, args.seconds)
                after = httpx.get(f"{base}/info").json()["served"]
                batches = max(1, after["batches"] - before["batches"])
                results[(mode, n)]["texts_per_forward"] = (after["texts"] - before["texts"]) / batches
                print(mode, n, json.dumps(results[(mode, n)]), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(f"\n{hardware()}; {args.seconds:g} s per cell, requests of 1-4 SST-2 dev sentences\n")
    print("| clients | mode | requests/s | texts/s | p50 ms | p99 ms | errors | texts per forward |\n"
          "|---|---|---|---|---|---|---|---|")
    for (mode, n), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"| {n} | {mode} | {r['requests_s']:.1f} | {r['texts_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
              f"{r['errors']} | {r['texts_per_forward']:.1f} |")
    for n in map(int, args.clients.split(",")):
        a, b = results[("micro-batched (5 ms)", n)], results[("one request at a time", n)]
        print(f"{n} clients: micro-batched / one at a time = {a['texts_s'] / max(b['texts_s'], 1e-9):.2f}x texts/s")


if __name__ == "__main__":
    main()
