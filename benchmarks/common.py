"""Shared pieces of the benchmarks: data subsets from ../shared/data and the stock HF + PEFT baseline."""

from __future__ import annotations

import csv
import platform
import random
import time
from pathlib import Path

import torch
import yaml

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def set_overrides(items: list[str]) -> dict[str, dict]:
    """``--set section.field=value`` arguments -> ``{section: {field: value}}`` for ``RunConfig``;
    values read as YAML scalars (``0.0``, ``16``, ``true``, ``all``), numbers like ``1e-3`` as floats."""
    out: dict[str, dict] = {}
    for item in items:
        key, eq, text = item.partition("=")
        section, dot, name = key.partition(".")
        if not eq or not dot:
            raise SystemExit(f"--set {item!r}: write section.field=value, e.g. lora.dropout=0.0")
        out.setdefault(section, {})[name] = yaml_scalar(text)
    return out


def yaml_scalar(text: str):
    """A command-line value as a YAML scalar (``0.0``, ``16``, ``true``, ``all``), numbers like ``1e-3``
    as floats (YAML 1.1 reads them, without a dot, as strings)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def sst2_subset(n: int, seed: int, out: Path) -> tuple[Path, Path]:
    """Write a seeded n-example subset of SST-2 train and the full dev set (872) as TSV files."""
    lines = (SHARED / "sst2" / "train.tsv").read_text().splitlines()
    body = lines[1:]
    random.Random(seed).shuffle(body)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.tsv").write_text("\n".join([lines[0]] + body[:n]) + "\n")
    return out / "train.tsv", SHARED / "sst2" / "dev.tsv"


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    rows = list(csv.reader(path.read_text().splitlines()[1:], delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[0].strip() for r in rows], [int(r[1]) for r in rows]


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the parent dies, so that stopping a benchmark
    (``pkill -f long_documents.py``) does not leave its measurement running on the cores (Linux)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def child_row(code: str, *args) -> dict | None:
    """Run ``code`` in a fresh Python process (its own peak memory) with ``args``; the JSON object on its
    last stdout line, or None (its stderr's end printed) when it failed."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        return None
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({cpu}), {torch.get_num_threads()} threads"


def stock_peft_train_eval(model_dir: str, train_texts, train_labels, dev_texts, dev_labels, lr: float,
                          epochs: int = 1, batch_size: int = 8, seed: int = 0, max_length: int = 64) -> dict:
    """The paper's recipe as a new user writes it: stock *ForSequenceClassification + PEFT LoRA
    (r 12, alpha 32, dropout 0.1, q/v), padded batches in random order, AdamW + linear decay."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, pad_token_id=tok.pad_token_id)
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=12, lora_alpha=32, lora_dropout=0.1,
                                             target_modules=["q_proj", "v_proj"]))
    order = list(range(len(train_texts)))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps = epochs * ((len(order) + batch_size - 1) // batch_size)
    sched = get_linear_schedule_with_warmup(opt, 0, steps)
    model.train()
    real = 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        random.Random(seed + epoch).shuffle(order)
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = tok([train_texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
            out = model(**enc, labels=torch.tensor([train_labels[i] for i in idx]))
            out.loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            real += int(enc["attention_mask"].sum())
    train_time = time.perf_counter() - t0
    model.eval()
    preds = []
    t1 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(dev_texts), 32):
            enc = tok(dev_texts[s : s + 32], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            preds += model(**enc).logits.argmax(-1).tolist()
    acc = sum(int(p == y) for p, y in zip(preds, dev_labels)) / len(dev_labels)
    return {"accuracy": acc, "train_time_s": train_time, "eval_time_s": time.perf_counter() - t1,
            "train_real_tokens_per_s": real / train_time}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_label_steps(model, plan, enc, opt, autocast, warmup: int, device: str = "cpu") -> tuple[float, float]:
    """labeltune training steps over ``plan`` (batches of example indices into ``enc``): real (non-pad)
    tokens/s of the steps after ``warmup`` (which absorb allocation and compilation), and the warm-up's seconds."""
    from labeltune.data.batching import collate

    model.train()
    warmup = min(warmup, len(plan) - 1)
    real, t_start, t0 = 0, time.perf_counter(), 0.0
    warmup_s = 0.0
    for k, rows in enumerate(plan):
        if k == warmup:
            sync(device)
            t0, real = time.perf_counter(), 0
            warmup_s = t0 - t_start
        batch = collate(rows, enc, 0, "single_label")
        with autocast:
            out = model(batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        real += batch["real_tokens"]
    sync(device)
    return real / (time.perf_counter() - t0), warmup_s
