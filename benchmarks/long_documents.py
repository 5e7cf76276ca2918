"""Long documents (issue 14): IMDB reviews, truncation at L tokens vs windowed reading with windows of L
tokens, same training subset, same defaults otherwise; accuracy, training time and peak memory (RSS of a
fresh process per configuration, CPU). Each run trains without an evaluation set (the recipe's schedule,
no epoch selection) and is scored once on --eval-size test reviews (seed 0 of the test split).

    .venv/bin/python benchmarks/long_documents.py [--train-size 300] [--eval-size 500] [--lengths 128,512]
        [--modes truncate,window,window-max,window-attention] [--option batch_size=8 --option epochs=4]

A mode ``window-P`` reads in windows combined by pooling P (``model.window_pooling``: mean, max,
attention, last); plain ``window`` is labeltune's default (mean).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import SHARED, child_row, hardware, yaml_scalar

CHILD = """
import json, resource, sys, time
import labeltune
train, dev, mode, length, options = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
reading, _, pooling = mode.partition("-")  # window-attention: windows combined by a learned attention
t0 = time.perf_counter()
model = labeltune.train(train, max_length=length, long_documents=reading, progress=False, calibration="none",
                        echo=lambda s: print(s, file=sys.stderr), **({"window_pooling": pooling} if pooling else {}),
                        **options)
m = model.metrics  # trained without an evaluation set (no epoch picked on the test reviews), scored once:
accuracy = model.evaluate(dev)["accuracy"]
print(json.dumps({"mode": mode, "length": length, "options": options, "accuracy": accuracy, "train_s": m["train_time_s"],
                  "wall_s": time.perf_counter() - t0, "steps": m["steps"],
                  "truncated_train": m["truncated_train_examples"],
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-size", type=int, default=300)
    ap.add_argument("--eval-size", type=int, default=500)
    ap.add_argument("--lengths", default="128,512")
    ap.add_argument("--modes", default="truncate,window")
    ap.add_argument("--option", action="append", default=[],
                    help="name=value (a YAML scalar) passed to labeltune.train for every row, repeatable")
    ap.add_argument("--out", type=Path, default=Path("bench_out/long_documents"))
    args = ap.parse_args()
    options = {}
    for item in args.option:
        name, eq, text = item.partition("=")
        if not eq:
            raise SystemExit(f"--option {item!r}: write name=value, e.g. batch_size=8")
        options[name] = yaml_scalar(text)
    from labeltune.bench.datasets import DATASETS, prepare

    args.out.mkdir(parents=True, exist_ok=True)
    train, dev = prepare(DATASETS["imdb"], SHARED, args.train_size, 0, args.out / "work", args.eval_size)
    results = []
    for length in map(int, args.lengths.split(",")):
        for mode in args.modes.split(","):
            row = child_row(CHILD, train, dev, mode, length, json.dumps(options))
            if row is None:
                continue
            results.append(row)
            (args.out / "results.json").write_text(json.dumps({"hardware": hardware(), "train_size": args.train_size,
                                                               "eval_size": args.eval_size, "results": results},
                                                              indent=2) + "\n")
    print("\n| reading | L | accuracy | training s | peak RSS GiB |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['length']} | {100 * r['accuracy']:.1f} | {r['train_s']:.0f} | {r['peak_rss_gib']:.2f} |")


if __name__ == "__main__":
    main()
