"""Where a training step's time goes: a few training steps of labeltune's defaults under cProfile.

    .venv/bin/python benchmarks/profile_steps.py --steps 15                       # the current code
    .venv/bin/python benchmarks/profile_steps.py --steps 15 --set lora.dropout=0.0
    .venv/bin/python benchmarks/profile_steps.py --src /path/to/worktree/src     # another commit's code
    .venv/bin/python benchmarks/profile_steps.py --task token --steps 20          # CoNLL-2003, 300 sentences

Sequence task: 2,000 SST-2 training sentences (subset seed 0). Token task: the sizes suite's 300
CoNLL-2003 training sentences (seed 0), or ``--train FILE`` (either task). The run's settings are
otherwise default; prints the training time and the functions that took longest (own time, then
cumulative). docs/BENCHMARKS.md, "Where the time goes", compares commits and settings with it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--task", choices=("sequence", "token"), default="sequence")
    ap.add_argument("--train", type=Path, default=None, help="training file (default: the task's subset above)")
    ap.add_argument("--set", action="append", default=[], help="section.field=value (a YAML scalar), repeatable")
    ap.add_argument("--src", default=None, help="import labeltune from this folder (another commit's src/)")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    from common import SHARED, set_overrides, sst2_subset
    from labeltune import RunConfig
    from labeltune.bench.datasets import DATASETS, prepare
    from labeltune.training import fit

    work = Path(tempfile.mkdtemp(prefix="profile-"))
    if args.train:
        train_file = args.train
    elif args.task == "sequence":
        train_file, _ = sst2_subset(2000, 0, work)
    else:
        train_file, _ = prepare(DATASETS["conll2003"], SHARED, 300, 0, work)
    data = {"text_column": "sentence"} if args.task == "sequence" and not args.train else {}
    config = RunConfig.from_dict({"model": {"task": args.task}, "data": data,
                                  "train": {"seed": 0, "max_steps": args.steps}})
    config = config.with_overrides(set_overrides(args.set))
    profiler = cProfile.Profile()
    profiler.enable()
    metrics = fit(config, str(train_file), None, work / "run", progress=False, echo=print).metrics
    profiler.disable()
    print(f"training time {metrics['train_time_s']:.1f} s for {args.steps} steps")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumtime").print_stats(args.top)


if __name__ == "__main__":
    main()
