"""CoNLL-2003 (issue 14): sentence-level tagging vs each sentence read with its document around it
(``--long-documents window``), same whole documents, same defaults otherwise.

    .venv/bin/python benchmarks/conll_documents.py [--train-sentences 300] [--dev-sentences 300]
        [--test-sentences 500] [--max-length 128] [--modes truncate,window]

Training takes whole documents (a seeded draw) until it holds --train-sentences sentences, so every
sentence has its real neighbours; the best epoch is picked on the dev documents and entity F1
(seqeval) is scored on the first test documents holding --test-sentences sentences, data neither
run saw. Each configuration runs in a fresh process (peak RSS is its own). Reads ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from common import SHARED, child_row, hardware

CHILD = """
import json, resource, sys, time
import labeltune
train, dev, test, mode, length = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
t0 = time.perf_counter()
model = labeltune.train(train, dev, task="token", max_length=length, long_documents=mode, progress=False,
                        echo=lambda s: print(s, file=sys.stderr))
m = model.metrics
test_m = model.evaluate(test)
print(json.dumps({"mode": mode, "max_length": length, "test_f1": test_m["f1"], "dev_f1": m["f1"],
                  "train_s": m["train_time_s"], "wall_s": time.perf_counter() - t0, "steps": m["steps"],
                  "recipe": m["recipe"], "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def documents(path: Path) -> list[str]:
    """The file's documents as CoNLL text, each starting with its -DOCSTART- line."""
    text = path.read_text()
    return ["-DOCSTART- -X- -X- O\n\n" + d.strip() + "\n" for d in text.split("-DOCSTART- -X- -X- O") if d.strip()]


def take(docs: list[str], sentences: int, out: Path) -> tuple[Path, int, int]:
    """Whole documents in the given order until they hold ``sentences`` sentences."""
    kept, n = [], 0
    for d in docs:
        if n >= sentences:
            break
        kept.append(d)
        n += sum(1 for block in d.split("\n\n")[1:] if block.strip())
    out.write_text("\n".join(kept))
    return out, len(kept), n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-sentences", type=int, default=300)
    ap.add_argument("--dev-sentences", type=int, default=300)
    ap.add_argument("--test-sentences", type=int, default=500)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--modes", default="truncate,window")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench_out/conll_documents"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train_docs = documents(SHARED / "conll2003" / "train.txt")
    random.Random(args.seed).shuffle(train_docs)
    train, n_docs, n_sent = take(train_docs, args.train_sentences, args.out / "train.conll")
    dev, *_ = take(documents(SHARED / "conll2003" / "valid.txt"), args.dev_sentences, args.out / "dev.conll")
    test, t_docs, t_sent = take(documents(SHARED / "conll2003" / "test.txt"), args.test_sentences, args.out / "test.conll")
    print(f"train: {n_sent} sentences in {n_docs} documents; test: {t_sent} sentences in {t_docs} documents",
          flush=True)
    results = []
    for mode in args.modes.split(","):
        row = child_row(CHILD, train, dev, test, mode, args.max_length)
        if row is None:
            continue
        results.append(row)
        (args.out / "results.json").write_text(json.dumps(
            {"hardware": hardware(), "train_sentences": n_sent, "train_documents": n_docs, "test_sentences": t_sent,
             "test_documents": t_docs, "results": results}, indent=2) + "\n")
    print("\n| reading | test entity F1 | dev F1 | training s | peak RSS GiB |\n|---|---|---|---|---|")
    for r in results:
        label = "sentence" if r["mode"] == "truncate" else "document windows"
        print(f"| {label} | {100 * r['test_f1']:.1f} | {100 * r['dev_f1']:.1f} | {r['train_s']:.0f} | "
              f"{r['peak_rss_gib']:.2f} |")


if __name__ == "__main__":
    main()
