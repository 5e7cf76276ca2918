"""Verbs on a saved run: evaluate on labelled data, predict on new text (what the CLI calls)."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator, Sequence

from .atomic import write_json_atomic
from .card import write_model_card
from .rundir import EVALUATE_WRITES, TRAINING_KEYS, is_merged

__all__ = ["evaluate_run", "predict_run", "predict_texts", "format_rows"]


def _load(run, device):
    from .modeling import LabelModel
    from .precision import resolve_device

    return LabelModel.from_pretrained(run, device=resolve_device(device))


def evaluate_run(run: str | Path, data: Any, out: str | Path | None = None, model=None,
                 device: str | None = None) -> dict[str, Any]:
    """Metrics of ``run`` on ``data``; written to RUN/metrics.json (keeping the training record; not
    for a run read from the Hugging Face Hub) and to ``out``."""
    from .data.readers import source_name

    model = model or _load(run, device)
    metrics = model.evaluate(data)
    metrics["eval_data"] = source_name(data)
    local = Path(run) if model.run_dir is None and Path(run).is_dir() else model.run_dir
    if local is not None:
        previous = json.loads((local / EVALUATE_WRITES).read_text(encoding="utf-8")) \
            if (local / EVALUATE_WRITES).exists() else {}
        for key in TRAINING_KEYS:
            if key in previous:
                metrics.setdefault(key, previous[key])
        write_json_atomic(local / EVALUATE_WRITES, metrics)
        write_model_card(local, model, metrics, exported=is_merged(local))
    if out:
        write_json_atomic(out, metrics)
    return metrics


CHUNK = 2048  # examples read, predicted and written at a time: memory stays bounded by a chunk


def predict_run(run: str | Path, data: Any, texts: Sequence[str] | None, out: str | Path | None,
                device: str | None = None, abstain_below: float = 0.0, chunk: int = CHUNK) -> int:
    """Predictions in input order; JSONL to ``out`` (CSV when it ends in .csv) or stdout; returns how
    many. A data file is streamed: read, predicted and written ``chunk`` examples at a time (CSV/TSV/
    JSONL/Parquet; CoNLL), so memory does not grow with the file. ``out`` appears only when
    complete. With ``abstain_below`` P, no label where the top score is under P (``calibration``).

    Under ``torchrun`` / ``accelerate launch`` (N processes) every process reads the file and predicts
    its share of each chunk (``rank::N``, on its own device); the main process gathers the rows and
    writes one output in input order."""

    from .atomic import atomic_text_file
    from .data.readers import source_name

    rank, world, state = 0, 1, None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch
        from accelerate import PartialState

        from .process_group import end_process_group_at_exit

        state = PartialState(cpu=not torch.cuda.is_available())
        end_process_group_at_exit()  # process_group.py: no abort at interpreter exit
        rank, world = state.process_index, state.num_processes
        if device in (None, "auto"):
            device = str(state.device)
    model = _load(run, device)
    model.abstain_below = abstain_below
    as_csv = bool(out) and str(out).endswith(".csv")
    if data is not None:
        name = source_name(data)
        examples = model.task.iter_read(data, model.config, require_labels=False)
        parts = (_predict_shared(model, part, name, rank, world) for part in _chunks(examples, chunk, model))
    else:
        parts = iter([model.predict(list(texts or []))])
    count = 0
    with (atomic_text_file(out) if out and rank == 0 else nullcontext(sys.stdout if rank == 0 else io.StringIO())) \
            as sink:
        for k, rows in enumerate(parts):
            sink.write(format_rows(rows, model, as_csv=as_csv, header=k == 0))
            count += len(rows)
    if state is not None:
        state.wait_for_everyone()  # the output exists when any process returns
    return count


def _chunks(examples: Iterator, size: int, model) -> Iterator[list]:
    """Lists of ``size`` examples, each extended while the next belongs with its last (``task.together``:
    a document read as context is never cut)."""
    examples = iter(examples)
    pending = next(examples, None)
    while pending is not None:
        part = [pending]
        pending = None
        for example in examples:
            if len(part) >= size and not model.task.together(part[-1], example, model.config):
                pending = example
                break
            part.append(example)
        yield part


def _predict_shared(model, examples: list, name: str, rank: int, world: int) -> list[dict]:
    """This chunk's rows in input order; with several processes each predicts every ``world``-th
    run of examples that belong together (one example, or a document's sentences) and the rows are
    gathered (every process gets them all)."""
    if world == 1:
        return model.predict_examples(examples, name)
    from accelerate.utils import gather_object

    runs: list[list[int]] = []
    for i, example in enumerate(examples):
        if runs and model.task.together(examples[i - 1], example, model.config):
            runs[-1].append(i)
        else:
            runs.append([i])
    mine = [i for run in runs[rank::world] for i in run]
    failure: Exception | None = None
    try:
        rows = model.predict_examples([examples[i] for i in mine], name) if mine else []
    except Exception as e:  # the others must still reach the gather, or they wait for this process forever
        rows, failure = [], e
    gathered = gather_object([(rank, f"{type(failure).__name__}: {failure}" if failure else None, list(zip(mine, rows)))])
    if failure is not None:
        raise failure
    for other, error, _ in gathered:
        if error is not None:
            from .errors import LabeltuneError

            raise LabeltuneError(f"prediction failed on process {other}: {error}")
    out: list = [None] * len(examples)
    for _, _, pairs in gathered:
        for i, row in pairs:
            out[i] = row
    return out


def predict_texts(model, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[dict]:
    """One dict per text, in input order (``model.predict`` on a list; kept for callers of 0.2)."""
    return model.predict(list(texts), list(pairs) if pairs is not None else None)


def format_rows(rows: list[dict], model, as_csv: bool = False, header: bool = True) -> str:
    """JSON lines, or CSV with every field of the task's rows (lists and mappings as JSON); ``header``:
    the CSV's first line (a later chunk of a streamed file has none)."""
    if not as_csv:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    fields = model.task.csv_fields(model.config, model.labels)
    buf = io.StringIO()
    writer = csv.writer(buf)
    if header:
        writer.writerow(fields)
    writer.writerows(model.task.csv_row(r, fields) for r in rows)
    return buf.getvalue()
