"""Calibration of LS scores (issue 14): ECE before / after temperature scaling, the temperature fitted on
data disjoint from the data it is scored on.

    .venv/bin/python benchmarks/calibration.py [--datasets sst2,trec6,imdb] [--train-size 300]

For each dataset: LS with labeltune's defaults (calibration off) on a seeded training subset; logits on
the evaluation split; the split is cut in two halves (seed 0): T is fitted on one half and ECE scored on
the other, then the other way round (2-fold cross-fitting); the table reports both halves' mean.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from common import SHARED, hardware


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="sst2,trec6,imdb")
    ap.add_argument("--train-size", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench_out/calibration"))
    args = ap.parse_args()
    import labeltune
    from labeltune.bench.datasets import DATASETS, prepare
    from labeltune.calibration import expected_calibration_error, fit_temperature

    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.datasets.split(","):
        ds = DATASETS[name]
        train, dev = prepare(ds, SHARED, args.train_size, args.seed, args.out / "work")
        t0 = time.perf_counter()
        model = labeltune.train(str(train), None, calibration="none", progress=False, seed=args.seed, **ds.data)
        train_s = time.perf_counter() - t0
        examples = model.task.read(str(dev), model.config)
        encoded, _ = model.task.encode(model, examples)
        logits = torch.stack(model.logits(encoded)).double()
        y = torch.tensor([e.target for e in encoded])
        order = list(range(len(y)))
        random.Random(0).shuffle(order)
        halves = [order[: len(order) // 2], order[len(order) // 2:]]
        folds = []
        for fit_idx, score_idx in (halves, halves[::-1]):
            t = fit_temperature(logits[fit_idx], y[fit_idx])
            z, yy = logits[score_idx], y[score_idx]
            folds.append({"temperature": t, "ece_before": expected_calibration_error(torch.softmax(z, -1), yy),
                          "ece_after": expected_calibration_error(torch.softmax(z / t, -1), yy),
                          "nll_before": float(torch.nn.functional.cross_entropy(z, yy)),
                          "nll_after": float(torch.nn.functional.cross_entropy(z / t, yy))})
        row = {"dataset": name, "train_size": args.train_size, "n_eval": len(y), "train_s": train_s,
               "accuracy": float((logits.argmax(-1) == y).double().mean()),
               **{k: sum(f[k] for f in folds) / 2 for k in folds[0]}, "folds": folds}
        print(json.dumps(row), flush=True)
        results.append(row)
    (args.out / "results.json").write_text(json.dumps({"hardware": hardware(), "results": results}, indent=2) + "\n")
    print("\n| dataset | train | eval | accuracy | T (mean of 2 folds) | ECE before | ECE after | NLL before | NLL after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['dataset']} | {r['train_size']} | {r['n_eval']} | {100 * r['accuracy']:.1f} | {r['temperature']:.2f} | "
              f"{r['ece_before']:.3f} | {r['ece_after']:.3f} | {r['nll_before']:.3f} | {r['nll_after']:.3f} |")


if __name__ == "__main__":
    main()
