"""The model card: README.md with YAML front matter (the Hugging Face Hub's format) in every run
directory and every export — labels, metrics, base model, settings, data, and how to load it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["model_card", "write_model_card"]

_PIPELINE = {"sequence": "text-classification", "token": "token-classification"}


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    keys = ("accuracy", "macro_f1", "micro_f1", "f1", "precision", "recall", "mse", "pearson")
    return {k: round(float(metrics[k]), 4) for k in keys if isinstance(metrics.get(k), (int, float))}


def model_card(model, metrics: dict[str, Any] | None = None, exported: bool = False) -> str:
    """README.md text for ``model`` (a LabelModel) with ``metrics`` (its metrics.json)."""
    import yaml

    from . import __version__

    cfg, metrics = model.config, metrics or {}
    task = cfg.model.task
    front = {
        "library_name": "labeltune",
        "base_model": cfg.model.name if cfg.model.name != "default" else "HuggingFaceTB/SmolLM2-135M-Instruct",
        "pipeline_tag": _PIPELINE.get(task, "text-classification"),
        "tags": ["labeltune", "ls-llama", "lora", task],
        "labels": list(model.labels.names),
        "problem_type": model.labels.problem_type,
        "metrics": _headline(metrics),
        "labeltune": {"version": __version__, "task": task, "pooling": cfg.model.pooling, "unmask": cfg.model.unmask,
                      "lora": {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "target_modules": cfg.lora.target_modules},
                      "merged": exported},
    }
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in _headline(metrics).items()) or "| (no evaluation) | |"
    data = (f"{metrics.get('train_examples', '?')} training examples; evaluated on {metrics.get('eval_data') or '—'}"
            f" ({metrics.get('n', '?')} examples)")
    template = cfg.data.template or "none (the raw text)"
    return f"""---
{yaml.safe_dump(front, sort_keys=False, allow_unicode=True).strip()}
---

# {task} labelling with labeltune

A label head on the final hidden states of `{front['base_model']}`, fine-tuned with LoRA
(label-supervised fine-tuning, LS-LLaMA{', bidirectional attention in layers ' + cfg.model.unmask if cfg.model.unmask not in (None, 'none') else ''}).
{'The LoRA weights are merged into `backbone/`.' if exported else 'The LoRA adapter is in `adapter/`, the head in `head.safetensors`.'}

Labels: {', '.join(f'`{n}`' for n in model.labels.names)}.

| metric | value |
|---|---|
{rows}

Data: {data}. Settings: `config.json` (pooling `{cfg.model.pooling}`, max length {cfg.data.max_length},
batch {cfg.train.batch_size}, {cfg.train.epochs} epochs, lr {cfg.train.lr}); input format (template):
`{json.dumps(template)[1:-1]}`.

## Use

```python
from labeltune import LabelModel          # pip install labeltune

model = LabelModel.from_pretrained("PATH_OR_HUB_ID")
model.predict("a text to label")
```

or `labeltune predict PATH --text "..."`, `labeltune serve PATH`. Plain transformers reads
{'`backbone/` as the (merged) base model; the label head is `head.safetensors`' if exported else 'the base model; the adapter is a PEFT LoRA in `adapter/`'}.
"""


def write_model_card(folder: Path, model, metrics: dict[str, Any] | None = None, exported: bool = False) -> None:
    from .atomic import write_text_atomic

    write_text_atomic(Path(folder) / "README.md", model_card(model, metrics, exported))
