"""How much the model itself gains from batching on this machine (the ceiling of the server's
micro-batching): LabelModel.predict on batches of 2, 20, 40 and 70 SST-2 dev sentences, texts/s.

    cd benchmarks && ../.venv/bin/python batch_scaling.py   (after serve_load.py made its run)
"""

from __future__ import annotations

import time

from common import SHARED
from serve_load import ROOT, make_run


def main():
    from labeltune import LabelModel

    model = LabelModel.from_pretrained(make_run(ROOT / "bench_out" / "serve_load"))
    lines = [line.split("\t")[0] for line in (SHARED / "sst2" / "dev.tsv").read_text().splitlines()[1:]]
    model.predict(lines[:8])  # warm-up
    for n in (2, 20, 40, 70):
        t0, done = time.perf_counter(), 0
        while time.perf_counter() - t0 < 6:
            model.predict(lines[:n])
            done += n
        print(f"batches of {n}: {done / (time.perf_counter() - t0):.1f} texts/s", flush=True)


if __name__ == "__main__":
    main()
