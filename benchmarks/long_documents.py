"""Long documents (issue 14): IMDB reviews, truncation at L tokens vs windowed reading with windows of L
tokens, same training subset, same defaults otherwise; accuracy, training time and peak memory (RSS of a
fresh process per configuration, CPU). Each run trains without an evaluation set (the recipe's schedule,
no epoch selection) and is scored once on --eval-size test reviews (seed 0 of the test split).

    .venv/bin/python benchmarks/long_documents.py [--train-size 300] [--eval-size 500] [--lengths 128,512] [--seed 0]
        [--modes truncate,window,window-max,window-attention] [--option batch_size=8 --option epochs=4]

Rows written by several invocations (other seeds, other lengths) are compared review by review with

    .venv/bin/python benchmarks/long_documents.py --compare DIR [DIR ...]

which groups the rows of every DIR/results.json by reading (mode, length, options but the seed) and prints
each group's accuracy per seed, and for each pair of groups the difference of their accuracies over the
seeds both ran, with a 95% interval from resampling the test reviews (paired: both groups read the same
reviews) and, per seed, McNemar's exact p-value on the reviews exactly one of them gets right.

A mode ``window-P`` reads in windows combined by pooling P (``model.window_pooling``: mean, max,
attention, last); plain ``window`` is labeltune's default (mean); ``stream`` reads a review whole in chunks
of L tokens (``long_documents=stream``). ``--seed S`` draws the training reviews and seeds training, as
``labeltune bench`` does (rows written before it trained with labeltune's default seed, 42, on subset 0).
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
examples = model.task.read(dev, model.config)
encoded, _ = model.task.encode(model, examples, source=dev)
metrics, decoded = model.task.evaluate(model, examples, encoded)
accuracy = metrics["accuracy"]
# each test review right (1) or wrong (0), in file order: for a paired comparison of two rows (--compare)
correct = "".join(str(int(d["label"] == model.labels.names[e.target])) for e, d in zip(encoded, decoded))
print(json.dumps({"mode": mode, "length": length, "options": options, "accuracy": accuracy, "correct": correct,
                  "train_s": m["train_time_s"],
                  "wall_s": time.perf_counter() - t0, "steps": m["steps"],
                  "truncated_train": m["truncated_train_examples"],
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def compare(dirs: list[Path], resamples: int = 10_000) -> str:
    """The markdown report ``--compare`` prints (see the module's docstring)."""
    import itertools

    import numpy as np
    from scipy.stats import binomtest

    groups: dict[str, dict[int, np.ndarray]] = {}
    for d in dirs:
        saved = json.loads((d / "results.json").read_text())
        for r in saved["results"]:
            if "correct" not in r:
                raise SystemExit(f"{d / 'results.json'}: a row without per-review results (written before --seed)")
            options = {k: v for k, v in r["options"].items() if k != "seed"}
            name = (f"{r['mode']} {r['length']}" + "".join(f" {k}={v}" for k, v in sorted(options.items()))
                    + f" (train {saved['train_size']}, test {saved['eval_size']})")
            seed = r["options"].get("seed", saved.get("seed", 0))
            if seed in groups.get(name, {}):
                raise SystemExit(f"{d / 'results.json'}: {name}, seed {seed} is in two of the folders; give one")
            groups.setdefault(name, {})[seed] = np.array([c == "1" for c in r["correct"]], dtype=float)
    lines = ["| reading | seeds | accuracy per seed | mean |", "|---|---|---|---|"]
    for name, by_seed in groups.items():
        accs = [100 * v.mean() for _, v in sorted(by_seed.items())]
        lines.append(f"| {name} | {', '.join(map(str, sorted(by_seed)))} | {', '.join(f'{a:.1f}' for a in accs)} "
                     f"| {np.mean(accs):.2f} |")
    # the interval resamples the test reviews only: it leaves out how much a run moves with its training
    # seed, which the per-seed differences show
    lines += ["", "| A − B | seeds | difference per seed | mean | 95% interval (reviews resampled) "
              "| McNemar p per seed |", "|---|---|---|---|---|---|"]
    rng = np.random.default_rng(0)
    for (a, ra), (b, rb) in itertools.combinations(groups.items(), 2):
        seeds = sorted(set(ra) & set(rb))
        if not seeds or any(len(ra[s]) != len(rb[s]) for s in seeds):
            continue
        per_review = np.mean([ra[s] - rb[s] for s in seeds], axis=0)  # (reviews,): A's lead on each review
        draws = rng.integers(0, len(per_review), size=(resamples, len(per_review)))
        low, high = np.percentile(100 * per_review[draws].mean(axis=1), [2.5, 97.5])
        p_values = []
        for s in seeds:  # the reviews exactly one of the two gets right
            a_only, b_only = int(((ra[s] == 1) & (rb[s] == 0)).sum()), int(((ra[s] == 0) & (rb[s] == 1)).sum())
            p_values.append(binomtest(a_only, a_only + b_only).pvalue if a_only + b_only else 1.0)
        per_seed = ", ".join(f"{100 * (ra[s].mean() - rb[s].mean()):+.1f}" for s in seeds)
        lines.append(f"| {a} − {b} | {', '.join(map(str, seeds))} | {per_seed} | {100 * per_review.mean():+.2f} "
                     f"| [{low:+.2f}, {high:+.2f}] | {', '.join(f'{p:.3f}' for p in p_values)} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-size", type=int, default=300)
    ap.add_argument("--eval-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0, help="draws the training subset and seeds training")
    ap.add_argument("--lengths", default="128,512")
    ap.add_argument("--modes", default="truncate,window")
    ap.add_argument("--option", action="append", default=[],
                    help="name=value (a YAML scalar) passed to labeltune.train for every row, repeatable")
    ap.add_argument("--out", type=Path, default=None, help="default: bench_out/long_documents-sSEED")
    ap.add_argument("--compare", type=Path, nargs="+", metavar="DIR",
                    help="compare the rows of earlier invocations' DIR/results.json review by review; trains nothing")
    args = ap.parse_args()
    if args.compare:
        print(compare(args.compare))
        return
    options = {}
    for item in args.option:
        name, eq, text = item.partition("=")
        if not eq:
            raise SystemExit(f"--option {item!r}: write name=value, e.g. batch_size=8")
        options[name] = yaml_scalar(text)
    options.setdefault("seed", args.seed)
    args.out = args.out or Path(f"bench_out/long_documents-s{args.seed}")
    from labeltune.bench.datasets import DATASETS, prepare

    args.out.mkdir(parents=True, exist_ok=True)
    train, dev = prepare(DATASETS["imdb"], SHARED, args.train_size, args.seed, args.out / "work",
                         args.eval_size)
    results = []
    for length in map(int, args.lengths.split(",")):
        for mode in args.modes.split(","):
            row = child_row(CHILD, train, dev, mode, length, json.dumps(options))
            if row is None:
                continue
            results.append(row)
            (args.out / "results.json").write_text(json.dumps({"hardware": hardware(), "train_size": args.train_size,
                                                               "seed": args.seed, "eval_size": args.eval_size, "results": results},
                                                              indent=2) + "\n")
    print("\n| reading | L | accuracy | training s | peak RSS GiB |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['length']} | {100 * r['accuracy']:.1f} | {r['train_s']:.0f} | {r['peak_rss_gib']:.2f} |")


if __name__ == "__main__":
    main()
