"""SST-2 quality at a fixed wall-clock budget: stock transformers + PEFT (paper recipe) vs labeltune's
defaults, side by side, on the embedded SmolLM2-135M-Instruct.

    .venv/bin/python benchmarks/sst2_quality.py            # 2,000 train (seed 0), full dev (872)
    .venv/bin/python benchmarks/sst2_quality.py --stock-lr 1e-4 --stock-lr 1e-3 --train-seeds 0,1,2

Neither side sees the dev set while training (no best-epoch selection on it): both train, then are
scored once on all 872 dev sentences. Wall time counts training only; evaluation is reported apart.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import hardware, read_tsv, set_overrides, sst2_subset, stock_peft_train_eval


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-size", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0, help="seed of the 2,000-example subset and of the stock run")
    ap.add_argument("--train-seeds", default=None, help="comma list of labeltune training seeds (default: --seed)")
    ap.add_argument("--stock-lr", type=float, action="append", help="stock learning rate(s); default 1e-4")
    ap.add_argument("--skip-stock", action="store_true")
    ap.add_argument("--set", action="append", default=[], help="labeltune override section.field=value")
    ap.add_argument("--out", type=Path, default=Path("bench_out/sst2_quality.json"))
    args = ap.parse_args()

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from labeltune import RunConfig
    from labeltune.backbone import resolve_model_dir
    from labeltune.inference import evaluate_run
    from labeltune.training import fit

    work = Path(tempfile.mkdtemp(prefix="sst2q-"))
    train_file, dev_file = sst2_subset(args.train_size, args.seed, work)
    model_dir = resolve_model_dir("default")
    results = {"hardware": hardware(), "train_size": args.train_size, "seed": args.seed, "rows": []}

    if not args.skip_stock:
        tr, dv = read_tsv(train_file), read_tsv(dev_file)
        for lr in args.stock_lr or [1e-4]:
            r = stock_peft_train_eval(model_dir, *tr, *dv, lr=lr, seed=args.seed)
            r["name"] = f"stock HF+PEFT (r12 q/v, batch 8 padded, 1 epoch, lr {lr:g})"
            results["rows"].append(r)
            print(json.dumps(r), flush=True)

    for seed in [int(x) for x in (args.train_seeds or str(args.seed)).split(",")]:
        cfg = RunConfig.from_dict({"data": {"text_column": "sentence"}, "train": {"seed": seed}})
        cfg = cfg.with_overrides(set_overrides(args.set))
        t0 = time.perf_counter()
        m = fit(cfg, str(train_file), None, work / f"run{seed}", progress=False, echo=print).metrics
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        ev = evaluate_run(work / f"run{seed}", str(dev_file))
        r = {"name": f"labeltune defaults, seed {seed}" + (f" ({', '.join(args.set)})" if args.set else ""),
             "accuracy": ev["accuracy"], "train_time_s": m["train_time_s"], "train_wall_incl_load_s": wall,
             "eval_time_s": time.perf_counter() - t1, "train_real_tokens_per_s": m["train_real_tokens_per_s"],
             "config": json.loads((work / f"run{seed}" / "config.json").read_text())}
        results["rows"].append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "config"}), flush=True)

    print(f"\nSST-2 dev accuracy, {args.train_size} train examples (seed {args.seed}), {results['hardware']}")
    print("| method | dev acc | train time (s) | real tok/s |\n|---|---|---|---|")
    for row in results["rows"]:
        print(f"| {row['name']} | {row['accuracy']:.4f} | {row['train_time_s']:.0f} | {row['train_real_tokens_per_s']:.0f} |")
    ours = [row for row in results["rows"] if row["name"].startswith("labeltune")]
    accs = [row["accuracy"] for row in ours]
    if len(accs) > 1:
        import statistics

        print(f"labeltune over {len(accs)} seeds: {100 * statistics.mean(accs):.1f} ± {100 * statistics.stdev(accs):.1f}% "
              f"(min {100 * min(accs):.1f})")
    if not args.skip_stock:
        base = [row["train_time_s"] for row in results["rows"] if row["name"].startswith("stock")]
        mean_ours = sum(row["train_time_s"] for row in ours) / len(ours)
        print(f"time ratio labeltune / stock: {mean_ours / (sum(base) / len(base)):.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
