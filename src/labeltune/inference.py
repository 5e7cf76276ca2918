"""Verbs on a saved run: evaluate on labelled data, predict on new text."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError
from .modeling import LabelModel
from .precision import resolve_device
from .rundir import write_json_atomic
from .tasks import encode_examples, evaluate_examples, read_examples

__all__ = ["evaluate_run", "predict_run", "predict_texts"]


def evaluate_run(run: str | Path, data: str, out: str | Path | None = None, model: LabelModel | None = None,
                 device: str | None = None) -> dict[str, Any]:
    """Metrics of ``run`` on ``data``; written to RUN/metrics.json (keeping the training history) and ``out``."""
    run = Path(run)
    model = model or LabelModel.from_pretrained(run, device=resolve_device(device))
    examples = read_examples(data, model.config)
    encoded, truncated = encode_examples(model.tokenizer, examples, model.labels, model.config, data)
    metrics, _ = evaluate_examples(model, examples, encoded)
    metrics.update(eval_data=data, truncated_examples=truncated)
    previous = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    for key in ("history", "best_epoch", "train_time_s", "train_real_tokens_per_s", "train_examples"):
        if key in previous:
            metrics.setdefault(key, previous[key])
    write_json_atomic(run / "metrics.json", metrics)
    if out:
        write_json_atomic(out, metrics)
    return metrics


def predict_run(run: str | Path, data: str | None, texts: Sequence[str] | None, out: str | Path | None,
                device: str | None = None) -> list[dict]:
    """Predictions in input order; JSONL to ``out`` (CSV when it ends in .csv) or stdout."""
    model = LabelModel.from_pretrained(run, device=resolve_device(device))
    if data:
        examples = read_examples(data, model.config, require_labels=False)
        rows = _predict_examples(model, examples, data)
    else:
        rows = predict_texts(model, list(texts or []))
    _write_rows(rows, out)
    return rows


def predict_texts(model: LabelModel, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[dict]:
    """One dict per text, in input order: ``label``/``scores`` (sequence) or ``tags``/``entities`` (token)."""
    column = model.config.data.text_pair_column
    if column and pairs is None:
        raise ConfigError(f"this run was trained on text pairs (column {column!r}); give one pair per text "
                          f"(or a --data file with a {column!r} column)")
    if not column and pairs is not None:
        raise ConfigError("this run was trained on single texts; give no pairs")
    if pairs is not None and len(pairs) != len(texts):
        raise ConfigError(f"{len(texts)} texts but {len(pairs)} pairs; give one pair per text")
    examples = _raw_examples(model, list(texts), list(pairs) if pairs is not None else None)
    return _predict_examples(model, examples, "--text")


def _predict_examples(model: LabelModel, examples: list, source: str) -> list[dict]:
    encoded, _ = encode_examples(model.tokenizer, examples, None, model.config, source)
    if model.config.model.task == "token":
        from .data.conll import predict_token_examples

        return predict_token_examples(model, examples, encoded)
    return [{"text": e.text, **({"pair": e.pair} if e.pair else {}), **model._decode(lg)}
            for e, lg in zip(examples, model.logits(encoded))]


def _raw_examples(model: LabelModel, texts: list[str], pairs: list[str] | None = None) -> list:
    if model.config.model.task == "token":
        from .data.conll import examples_from_raw_text

        return examples_from_raw_text(texts)
    from .data.readers import TextExample

    pairs = pairs if pairs is not None else [None] * len(texts)
    return [TextExample(t, p, None, f"--text #{i + 1}") for i, (t, p) in enumerate(zip(texts, pairs))]


def _write_rows(rows: list[dict], out: str | Path | None) -> None:
    if out and str(out).endswith(".csv"):
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["text", "label", "score"])
        for r in rows:
            writer.writerow([r.get("text"), r.get("label", "|".join(r.get("labels", []))), r.get("score", r.get("value"))])
        text = buf.getvalue()
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(out).with_name(f".{Path(out).name}.tmp")
        tmp.write_text(text)
        tmp.replace(out)
    else:
        sys.stdout.write(text)
