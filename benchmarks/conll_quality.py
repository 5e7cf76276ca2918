"""CoNLL-2003 NER with the embedded SmolLM2-135M: causal (LS-LLaMA) vs all layers unmasked
(LS-unLLaMA) vs unmasking from layer K, same data, same recipe, same epochs.

    .venv/bin/python benchmarks/conll_quality.py                       # 2,000 train sentences, full dev
    .venv/bin/python benchmarks/conll_quality.py --unmask none --unmask all --unmask from:15

Reads ../shared/data/conll2003 (never copied into the repository). Entity F1 is seqeval's micro F1
on all 3,250 dev sentences; the run selects no epoch on dev (it trains, then is scored once).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from common import SHARED, hardware, set_overrides


def subset(n: int, seed: int, out: Path) -> Path:
    """n training sentences (seeded), written in CoNLL format to a temp file."""
    blocks = [b for b in (SHARED / "conll2003" / "train.txt").read_text().split("\n\n")
              if b.strip() and not b.strip().startswith("-DOCSTART-")]
    random.Random(seed).shuffle(blocks)
    out.write_text("\n\n".join(blocks[:n]) + "\n")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-size", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--unmask", action="append", help="settings to compare (default: none, all, from:10, from:20)")
    ap.add_argument("--set", action="append", default=[], help="extra override section.field=value")
    ap.add_argument("--eval-limit", type=int, default=0, help="smoke runs: score only the first N dev sentences")
    ap.add_argument("--out", type=Path, default=Path("bench_out/conll_quality.json"))
    args = ap.parse_args()
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from labeltune import RunConfig
    from labeltune.inference import evaluate_run
    from labeltune.training import fit

    work = Path(tempfile.mkdtemp(prefix="conllq-"))
    train_file = subset(args.train_size, args.seed, work / "train.conll")
    dev_file = SHARED / "conll2003" / "valid.txt"
    if args.eval_limit:
        blocks = [b for b in dev_file.read_text().split("\n\n") if b.strip() and not b.strip().startswith("-DOCSTART-")]
        dev_file = work / "dev.conll"
        dev_file.write_text("\n\n".join(blocks[: args.eval_limit]) + "\n")
    results = {"hardware": hardware(), "train_size": args.train_size, "seed": args.seed, "epochs": args.epochs,
               "rows": []}
    for unmask in args.unmask or ["none", "all", "from:10", "from:20"]:
        overrides = {"model": {"task": "token", "unmask": unmask}, "train": {"epochs": args.epochs, "seed": args.seed}}
        for section, values in set_overrides(args.set).items():
            overrides.setdefault(section, {}).update(values)
        cfg = RunConfig.from_dict(overrides)
        t0 = time.perf_counter()
        m = fit(cfg, str(train_file), None, work / f"run-{unmask.replace(':', '')}", progress=False, echo=print).metrics
        wall = time.perf_counter() - t0
        ev = evaluate_run(work / f"run-{unmask.replace(':', '')}", str(dev_file))
        row = {"unmask": unmask, "f1": ev["f1"], "precision": ev["precision"], "recall": ev["recall"],
               "strict_f1": ev["strict_f1"], "token_accuracy": ev["token_accuracy"],
               "per_type_f1": {k: v["f1"] for k, v in ev["per_type"].items()}, "train_time_s": m["train_time_s"],
               "train_wall_s": wall, "train_real_tokens_per_s": m["train_real_tokens_per_s"],
               "truncated_dev_sentences": ev.get("truncated_sentences")}
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nCoNLL-2003 dev entity F1, {args.train_size} train sentences, {args.epochs:g} epochs, {results['hardware']}")
    print("| unmask | entity F1 | P | R | strict F1 | train time (s) |\n|---|---|---|---|---|---|")
    for r in results["rows"]:
        print(f"| {r['unmask']} | {r['f1']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | {r['strict_f1']:.4f} "
              f"| {r['train_time_s']:.0f} |")


if __name__ == "__main__":
    main()
