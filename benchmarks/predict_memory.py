"""Streaming prediction (issue 13): peak memory of `labeltune predict RUN --data FILE --out OUT` for files
of 10,000 and 200,000 rows. Each size runs in a fresh process; its peak resident memory (ru_maxrss)
is reported. The run is a small random Llama (2 layers, hidden 64) with the embedded SmolLM2
tokenizer: what is measured is the reading, batching and writing, which do not depend on the model's
size (a larger model adds the same constant to every row of the table).

    .venv/bin/python benchmarks/predict_memory.py [--rows 10000,200000] [--format csv]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import SHARED, hardware

CHILD = """
import json, resource, sys, time
from labeltune.inference import predict_run
t0 = time.perf_counter()
n = predict_run(sys.argv[1], sys.argv[2], None, sys.argv[3], device="cpu")
print(json.dumps({"rows": n, "seconds": time.perf_counter() - t0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_run(work: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaModel

    from labeltune import LabelModel, RunConfig
    from labeltune.backbone import load_tokenizer, resolve_model_dir
    from labeltune.data import LabelMap

    tok = load_tokenizer(resolve_model_dir("default"))
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=512)
    torch.manual_seed(0)
    base = work / "tiny-smollm-tokenizer"
    LlamaModel(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    config = RunConfig.from_dict({"model": {"name": str(base)}, "train": {"mixed_precision": "no"}})
    run = work / "run"
    LabelModel.from_config(config, LabelMap(["negative", "positive"], "single_label")).save_pretrained(run, overwrite=True)
    return run


def make_data(path: Path, rows: int, fmt: str) -> Path:
    """``rows`` SST-2 sentences (cycled, numbered so that no two rows are equal)."""
    sentences = [line.split("\t")[0] for line in (SHARED / "sst2" / "train.tsv").read_text().splitlines()[1:]]
    texts = (f"{sentences[i % len(sentences)]} ({i})" for i in range(rows))
    with path.open("w") as f:
        if fmt == "csv":
            import csv

            writer = csv.writer(f)
            writer.writerow(["text"])
            writer.writerows([t] for t in texts)
        else:
            f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="10000,200000")
    ap.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    ap.add_argument("--out", type=Path, default=Path("bench_out/predict_memory"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run = make_run(args.out)
    results = []
    for n in map(int, args.rows.split(",")):
        data = make_data(args.out / f"data{n}.{args.format}", n, args.format)
        proc = subprocess.run([sys.executable, "-c", CHILD, str(run), str(data), str(args.out / f"pred{n}.jsonl")],
                              capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row.update(file_mib=data.stat().st_size / 2**20)
        print(json.dumps(row), flush=True)
        results.append(row)
    (args.out / "results.json").write_text(json.dumps({"hardware": hardware(), "results": results}, indent=2) + "\n")
    print("\n| rows | file MiB | peak RSS MiB | seconds |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['rows']:,} | {r['file_mib']:.1f} | {r['peak_rss_mib']:.0f} | {r['seconds']:.0f} |")
    if len(results) >= 2:
        print(f"\npeak RSS ratio, largest / smallest file: {results[-1]['peak_rss_mib'] / results[0]['peak_rss_mib']:.3f}")


if __name__ == "__main__":
    main()
