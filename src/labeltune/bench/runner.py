"""Run a benchmark suite (YAML under labeltune/suites/) and write results.json, RESULTS.md and a chart.

Every method sees the same seeded training subset and the same full evaluation split of each dataset.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..atomic import write_json_atomic, write_text_atomic
from ..config import RunConfig
from ..data.labels import LabelMap
from ..errors import ConfigError
from ..tasks import get_task
from .datasets import DATASETS, prepare

__all__ = ["list_suites", "load_suite", "run_suite", "read_split", "label_names", "label_ids"]

SUITES = Path(__file__).resolve().parents[1] / "suites"


def list_suites() -> dict[str, str]:
    return {p.stem: yaml.safe_load(p.read_text()).get("description", "") for p in sorted(SUITES.glob("*.yaml"))}


def load_suite(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.exists():
        path = SUITES / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown suite {name_or_path!r}; available: {', '.join(list_suites())} (or a YAML path)")
    suite = yaml.safe_load(path.read_text())
    unknown = [d for d in suite["datasets"] if d not in DATASETS]
    if unknown:
        raise ConfigError(f"{path}: unknown datasets {unknown}; known: {', '.join(DATASETS)}")
    for m in suite["methods"]:
        if m.get("kind") not in ("ls", "prompt", "encoder"):
            raise ConfigError(f"{path}: method {m.get('name')!r} has kind {m.get('kind')!r}; use ls, prompt or encoder")
    suite.setdefault("name", path.stem)
    return suite


def _ls(ds, method, suite, model, train_file, eval_file, seed, work) -> dict:
    from ..inference import evaluate_run
    from ..training import fit

    settings: dict[str, dict] = {"model": {"name": model, "task": ds.task}, "data": dict(ds.data),
                                 "train": {**suite.get("train", {}), "seed": seed}}
    for key in ("pooling", "unmask", "label_alignment"):
        if key in method:
            settings["model"][key] = method[key]
    if ds.verbalizers:  # the label words head_init=labels reads (the prompting baseline's)
        settings["model"]["label_words"] = dict(ds.verbalizers)
    for section in ("model", "lora", "train"):
        settings.setdefault(section, {}).update(method.get(section, {}))
    # named after the training subset (dataset, size, seed): --jobs may run two sizes of a method at once
    run = work / f"run-{train_file.stem}-{method['name'].replace(' ', '_').replace(':', '')}"
    fit(RunConfig.from_dict(settings), str(train_file), None, run, overwrite=True, progress=False, echo=lambda s: None)
    return evaluate_run(run, str(eval_file))


def read_split(ds, path) -> list:
    """The examples of one prepared split of ``ds``, read as its task reads them."""
    cfg = RunConfig.from_dict({"model": {"task": ds.task}, "data": dict(ds.data)})
    return get_task(ds.task).read(path, cfg)


def label_names(train_ex) -> list[str]:
    """The label names of sequence examples, normalised as LabelMap does (``1.0`` and ``1`` are one label)."""
    return LabelMap.build([e.label for e in train_ex]).names


def label_ids(examples, names: list[str]) -> list[int]:
    """Class ids of sequence examples under ``names`` (LabelMap's normalisation, never ``str()``)."""
    return [LabelMap(names).encode(e.label, "bench", e.where) for e in examples]


def _causal_lm(model: str, method: dict):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..backbone import resolve_model_dir

    src = resolve_model_dir(model)
    tok = AutoTokenizer.from_pretrained(src)
    tok.pad_token = tok.pad_token or tok.eos_token
    lm = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16 if method.get("bf16", True) else None).eval()
    return lm, tok


def _prompt_sequence(ds, method, lm, tok, train_ex, eval_ex, rng, k) -> dict:
    from ..baselines.prompting import label_likelihood_predict
    from ..metrics import sequence_metrics

    names = label_names(train_ex)
    train_ids = label_ids(train_ex, names)
    demos = []
    for c, name in enumerate(names):
        pool = [e for e, y in zip(train_ex, train_ids) if y == c]
        demos += [(e.text, ds.verbalizers[name]) for e in rng.sample(pool, min(k, len(pool)))]
    rng.shuffle(demos)
    preds = label_likelihood_predict(lm, tok, [e.text for e in eval_ex], [ds.verbalizers[n] for n in names],
                                     ds.instruction, demos, normalize=method.get("normalize", "sum"),
                                     calibrate=bool(method.get("calibrate", False)))
    return sequence_metrics(label_ids(eval_ex, names), preds, names)


def _prompt_token(ds, method, lm, tok, train_ex, eval_ex, rng, k) -> dict:
    from ..baselines.prompting import ner_prompt_predict
    from ..metrics import token_metrics

    demos = []
    for kind in ds.types:
        pool = [e for e in train_ex if any(t.endswith("-" + kind) for t in e.tags)]
        demos += [(e.tokens, e.tags) for e in rng.sample(pool, min(k, len(pool)))]
    limit = method.get("eval_limit")
    eval_ex = eval_ex[:limit] if limit else eval_ex
    help_ = ", ".join(f"{t} ({d})" for t, d in ds.types.items())
    tags, rejected = ner_prompt_predict(lm, tok, [e.tokens for e in eval_ex], list(ds.types), help_, demos)
    metrics = token_metrics([e.tags for e in eval_ex], tags)
    metrics["rejected_lines"] = rejected
    return metrics


def _prompt(ds, method, suite, model, train_file, eval_file, seed, work) -> dict:
    lm, tok = _causal_lm(model, method)
    train_ex, eval_ex = read_split(ds, train_file), read_split(ds, eval_file)
    run = {"sequence": _prompt_sequence, "token": _prompt_token}[ds.task]
    return run(ds, method, lm, tok, train_ex, eval_ex, random.Random(seed), int(method.get("shots", 0)))


def _encoder_sequence(name, train_ex, eval_ex, epochs, lr, seed) -> dict:
    from ..baselines.encoder import encoder_sequence
    from ..metrics import sequence_metrics

    names = label_names(train_ex)
    preds = encoder_sequence(name, [e.text for e in train_ex], label_ids(train_ex, names), [e.text for e in eval_ex],
                             len(names), epochs=epochs, lr=lr, seed=seed)
    return sequence_metrics(label_ids(eval_ex, names), preds, names)


def _encoder_token(name, train_ex, eval_ex, epochs, lr, seed) -> dict:
    from ..baselines.encoder import encoder_token
    from ..metrics import token_metrics
    from ..tasks.token import build_tag_map

    tag_names = build_tag_map(train_ex, "first").names
    preds = encoder_token(name, [e.tokens for e in train_ex], [e.tags for e in train_ex], [e.tokens for e in eval_ex],
                          tag_names, epochs=epochs, lr=lr, seed=seed)
    return token_metrics([e.tags for e in eval_ex], preds)


def _encoder(ds, method, suite, model, train_file, eval_file, seed, work) -> dict:
    from ..baselines.encoder import minilm_dir

    name = method.get("model", "minilm")
    name = minilm_dir() if name == "minilm" else name
    train_ex, eval_ex = read_split(ds, train_file), read_split(ds, eval_file)
    run = {"sequence": _encoder_sequence, "token": _encoder_token}[ds.task]
    return run(name, train_ex, eval_ex, int(method.get("epochs", 3)), float(method.get("lr", 5e-5)), seed)


_METHODS = {"ls": _ls, "prompt": _prompt, "encoder": _encoder}


def _reads_no_training_data(method: dict) -> bool:
    return method["kind"] == "prompt" and int(method.get("shots", 0)) == 0


def _method_seeds(method: dict, seeds: list[int]) -> list[int]:
    """Seeds a method runs with: all by default, the first n with ``seeds: n``; zero-shot prompting
    reads no training data and is deterministic, so it runs once."""
    if _reads_no_training_data(method):
        return seeds[:1]
    return seeds[: int(method.get("seeds", len(seeds)))]


def _run_cell(kind: str, ds_name: str, method: dict, suite: dict, model: str, train_file: Path, eval_file: Path,
              seed: int, work: Path) -> tuple[dict, float, int]:
    """One cell: (metrics, wall seconds, CPU threads it ran with). Top-level so a worker process can run it."""
    import torch

    t0 = time.perf_counter()
    metrics = _METHODS[kind](DATASETS[ds_name], method, suite, model, train_file, eval_file, seed, work)
    return metrics, time.perf_counter() - t0, torch.get_num_threads()


def _init_worker(threads: int, parent: int | None = None) -> None:
    """A bench worker process: quiet libraries, ``threads`` CPU threads (the machine's cores shared out
    between the workers: two processes with every core each slow both down many times over), and on
    Linux it ends with ``parent``: a bench stopped with SIGTERM (``pkill -f 'labeltune bench'``) must not
    leave its cells computing on the cores (they did: two orphans halved a later run's speed)."""
    from ..cli import _quiet_libraries

    if parent is not None and sys.platform == "linux":
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above: nothing will signal
            os._exit(1)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    _quiet_libraries()
    import torch

    torch.set_num_threads(threads)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_suite(suite: dict, model: str, data_root: Path, output: Path, seeds: list[int] | None = None,
              datasets: list[str] | None = None, resume: bool = False, echo=print, jobs: int = 1) -> dict:
    """Run every (dataset, size, seed, method) cell; with ``resume``, cells already in output/results.json
    (same suite and model) are kept rather than rerun. ``jobs`` > 1 runs that many cells at once, each
    in its own process with the cores shared out (cores // jobs threads each)."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    seeds = seeds or suite.get("seeds", [0])
    names = datasets or suite["datasets"]
    output.mkdir(parents=True, exist_ok=True)
    work = output / "work"
    results: dict[str, Any] = {"suite": suite["name"], "model": model, "seeds": seeds, "rows": [],
                               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_s": 0.0}
    previous = output / "results.json"
    if resume and previous.exists():
        old = json.loads(previous.read_text())
        if old.get("suite") == suite["name"] and old.get("model") == model:
            results.update(rows=old["rows"], started=old["started"], wall_s=old.get("wall_s", 0.0))
    done = {(r["dataset"], r.get("train_size", suite.get("train_size")), r["method"], r["seed"])
            for r in results["rows"]}
    t_all = time.perf_counter() - results["wall_s"]
    # Plan: a job per computation, in the order the suite lists them; a job fills one or more cells
    # (zero-shot prompting reads no training data: run once per dataset, it fills every size).
    plan: list[tuple[tuple, list[tuple]]] = []  # (run_cell arguments, [(dataset, size, method, seed), ...])
    zero_shot: dict = {}
    for name in names:
        ds = DATASETS[name]
        for size, seed in [(n, s) for n in _train_sizes(suite, ds.task) for s in seeds]:
            todo = [m for m in suite["methods"] if ds.task in m.get("tasks", ["sequence", "token"])
                    and name in m.get("datasets", [name]) and size in m.get("sizes", [size])
                    and seed in _method_seeds(m, seeds)
                    and (name, size, m["name"], seed) not in done]
            if not todo:
                continue
            train_file, eval_file = prepare(ds, data_root, size, seed, work, suite.get("eval_size"))
            for method in todo:
                cell = (name, size, method, seed)
                if _reads_no_training_data(method) and (name, method["name"]) in zero_shot:
                    zero_shot[(name, method["name"])].append(cell)
                    continue
                cells = [cell]
                if _reads_no_training_data(method):
                    zero_shot[(name, method["name"])] = cells
                plan.append(((method["kind"], name, method, suite, model, train_file, eval_file, seed, work), cells))

    def record(cells, outcome):
        metrics, wall_s, threads = outcome
        for i, (name, size, method, seed) in enumerate(cells):
            task = DATASETS[name].task
            row = {"dataset": name, "train_size": size, "task": task, "method": method["name"], "seed": seed,
                   "wall_s": wall_s if i == 0 else 0.0, "threads": threads,
                   **{k: metrics[k] for k in get_task(task).report_metrics}, "n_eval": metrics.get("n")}
            results["rows"].append(row)
            echo(json.dumps(row))
        results["wall_s"] = time.perf_counter() - t_all
        write_json_atomic(output / "results.json", results)  # every finished cell is kept (--resume)

    if jobs == 1:
        for args, cells in plan:
            record(cells, _run_cell(*args))
    elif plan:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        threads = max(1, _cores() // jobs)
        echo(f"{len(plan)} cells, {jobs} at a time, {threads} CPU thread(s) each")
        # longest first (LS, then the largest training sets), so no worker is left alone with a long
        # cell at the end while the other idles
        plan = sorted(plan, key=lambda job: (job[0][0] != "ls", -job[1][0][1]))
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
            pending = {pool.submit(_run_cell, *args): cells for args, cells in plan}
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        record(pending.pop(future), future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # cells not started yet never start
                raise
    results.update(wall_s=time.perf_counter() - t_all, versions=_versions(), jobs=jobs)
    write_json_atomic(output / "results.json", results)
    table = results_table(results, suite)
    per_method: dict[str, float] = {}
    for r in results["rows"]:
        per_method[r["method"]] = per_method.get(r["method"], 0.0) + r["wall_s"]
    header = (f"Suite `{suite['name']}`, model `{model}`, seeds {seeds}, started {results['started']}; "
              f"wall time {results['wall_s'] / 60:.1f} min, {jobs} cell(s) at a time (cell minutes: "
              + ", ".join(f"{m} {t / 60:.1f}" for m, t in per_method.items()) + ").\n"
              f"Versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}.\n\n")
    write_text_atomic(output / "RESULTS.md", header + table + "\n")
    chart(results, suite, output / "results.png")
    echo(table)
    return results


def _versions() -> dict[str, str]:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "scikit-learn", "seqeval"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _train_sizes(suite: dict, task: str) -> list:
    """The training-set sizes a suite runs a task at: ``train_sizes: {sequence: [...], token: [...]}``
    (the data-size sweep), else the one ``train_size`` (None: the whole split)."""
    return list(suite.get("train_sizes", {}).get(task, [])) or [suite.get("train_size")]


def _column(row: dict, suite: dict) -> str:
    """A table column: the dataset, and its training size in a size sweep (``sst2@300``)."""
    return f"{row['dataset']}@{row['train_size']}" if suite.get("train_sizes") else row["dataset"]


def _cells(results, suite, key=None):
    """{(method, column): [score per seed]} for the primary metric (or ``key``) of each task."""
    methods = list(dict.fromkeys(m["name"] for m in suite["methods"]))  # a name may span several entries
    # columns in the suite's dataset order, sizes ascending, whatever order the cells finished in
    # (--jobs runs the largest first)
    order = {d: i for i, d in enumerate(suite["datasets"])}
    rows = sorted(results["rows"], key=lambda r: (order.get(r["dataset"], len(order)), r.get("train_size") or 0))
    datasets = list(dict.fromkeys(_column(r, suite) for r in rows))
    cells: dict[tuple[str, str], list[float]] = {}
    for r in results["rows"]:
        k = key or get_task(r["task"]).report_metrics[0]
        if r.get(k) is not None:
            cells.setdefault((r["method"], _column(r, suite)), []).append(r[k])
    return methods, datasets, cells


_SHORT = {"accuracy": "acc", "f1": "entity F1"}


def _task(column: str):
    return get_task(DATASETS[column.partition("@")[0]].task)


def _metric(column: str) -> str:
    """The headline metric of a column's task (the table's cells)."""
    return _task(column).report_metrics[0]


def _fmt(values: list[float] | None, most: int = 0) -> str:
    """One cell: the score, or mean ± sample std, with the seed count when it is not the table's ``most``."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    note = f" ({len(values)} seeds)" if len(values) != most else ""
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}{note}"


def results_table(results: dict, suite: dict) -> str:
    """Markdown: rows methods, columns datasets; mean ± std over seeds where a cell ran with several."""
    methods, datasets, cells = _cells(results, suite)
    head = "| method | " + " | ".join(f"{d} ({_SHORT[_metric(d)]})" for d in datasets) + " |"
    most = max((len(v) for v in cells.values()), default=0)
    lines = [head, "|---" * (len(datasets) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(_fmt(cells.get((m, d)), most) for d in datasets) + " |" for m in methods]
    seq = [d for d in datasets if "macro_f1" in _task(d).report_metrics]
    if seq:
        _, _, macro = _cells(results, suite, "macro_f1")
        lines += ["", "Macro-F1 (sequence tasks):", "", "| method | " + " | ".join(seq) + " |", "|---" * (1 + len(seq)) + "|"]
        lines += [f"| {m} | " + " | ".join(_fmt(macro.get((m, d)), most) for d in seq) + " |" for m in methods]
    if most > 1:
        lines += ["", f"Cells with ± are mean ± sample std over {most} seeds unless a count is given (training "
                      "subset and initialisation change with the seed); the others ran once."]
    return "\n".join(lines)


def chart(results: dict, suite: dict, path: Path) -> None:
    from ..report import pyplot

    plt = pyplot()
    methods, datasets, cells = _cells(results, suite)
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(datasets)), 5.5))
    width = 0.8 / max(1, len(methods))
    for k, m in enumerate(methods):
        xs = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(datasets))]
        ys = [100 * statistics.mean(cells[(m, d)]) if cells.get((m, d)) else 0 for d in datasets]
        ax.bar(xs, ys, width, label=m)
    ax.set_xticks(range(len(datasets)), [f"{d}\n({_SHORT[_metric(d)]})" for d in datasets])
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))  # below: never over a bar
    ax.set_title(f"labeltune bench — suite {results['suite']}, model {results['model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
