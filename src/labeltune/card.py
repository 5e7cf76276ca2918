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


def model_card(model, metrics: dict[str, Any] | None = None, exported: bool = False,
               stock_format: dict[str, Any] | None = None) -> str:
    """README.md text for ``model`` (a LabelModel) with ``metrics`` (its metrics.json); ``stock_format``
    (input_format.json) for an export in the plain transformers layout."""
    import yaml

    from . import __version__

    cfg, metrics = model.config, metrics or {}
    task = cfg.model.task
    front = {
        "library_name": "transformers" if stock_format else "labeltune",
        "base_model": cfg.model.name if cfg.model.name != "default" else "HuggingFaceTB/SmolLM2-135M-Instruct",
        "pipeline_tag": _PIPELINE.get(task, "text-classification"),
        "tags": ["labeltune", "ls-llama", "lora", task],
        "labels": list(model.labels.names),
        "problem_type": model.labels.problem_type,
        "metrics": _headline(metrics),
        "labeltune": {"version": __version__, "task": task, "pooling": cfg.model.pooling, "unmask": cfg.model.unmask,
                      "depth": cfg.model.depth,
                      "lora": {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "target_modules": cfg.lora.target_modules,
                               "layers": cfg.lora.layers},
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

A label head on the final hidden states of `{front['base_model']}`{'' if cfg.model.depth in (None, 'all') else f" (its first {cfg.model.depth} decoder layers)"}, fine-tuned with LoRA
(label-supervised fine-tuning, LS-LLaMA{', bidirectional attention in layers ' + cfg.model.unmask if cfg.model.unmask not in (None, 'none') else ''}).
{'A standard transformers checkpoint (LoRA merged, the head as the `score` layer).' if stock_format else 'The LoRA weights are merged into `backbone/`.' if exported else 'The LoRA adapter is in `adapter/`, the head in `head.safetensors`.'}

Labels: {', '.join(f'`{n}`' for n in model.labels.names)}.

| metric | value |
|---|---|
{rows}

Data: {data}. Settings: `{'labeltune_run.json' if stock_format else 'config.json'}` (pooling `{cfg.model.pooling}`, max length {cfg.data.max_length},
batch {cfg.train.batch_size}, {cfg.train.epochs} epochs, lr {cfg.train.lr}); input format (template):
`{json.dumps(template)[1:-1]}`.

{_use_stock(stock_format) if stock_format else _use_labeltune(exported)}"""


def write_model_card(folder: Path, model, metrics: dict[str, Any] | None = None, exported: bool = False) -> None:
    from .atomic import write_text_atomic

    write_text_atomic(Path(folder) / "README.md", model_card(model, metrics, exported))


def _use_labeltune(exported: bool) -> str:
    return f"""## Use

```python
from labeltune import LabelModel          # pip install labeltune

model = LabelModel.from_pretrained("PATH_OR_HUB_ID")
model.predict("a text to label")
```

or `labeltune predict PATH --text "..."`, `labeltune serve PATH`. Plain transformers reads
{'`backbone/` as the (merged) base model; the label head is `head.safetensors`' if exported else 'the base model; the adapter is a PEFT LoRA in `adapter/`'}.
"""


def _use_stock(fmt: dict[str, Any]) -> str:
    """Plain transformers, no labeltune: the input per input_format.json."""
    if fmt["task"] == "token":
        return """## Use (plain transformers, no labeltune)

```python
import json, torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

path = "PATH_OR_HUB_ID"
tok, model = AutoTokenizer.from_pretrained(path), AutoModelForTokenClassification.from_pretrained(path)
fmt = json.load(open(f"{path}/input_format.json"))            # the run's input format
words = "Shares of Acme Corp fell in Paris".split()
pieces = [tok((" " if k else "") + w, add_special_tokens=False).input_ids for k, w in enumerate(words)]
ids, first = list(fmt["prefix_ids"]), []
for p in pieces:
    first.append(len(ids)); ids += p
logits = model(input_ids=torch.tensor([ids + fmt["suffix_ids"]])).logits[0]
tags = [model.config.id2label[int(i)] for i in logits[first].argmax(-1)]   # label_alignment first
```
"""
    line = ('tok(fmt["template"].format(text=text' + (', pair=pair' if fmt.get("pairs") else '') + '), return_tensors="pt")'
            if fmt.get("template") else 'tok(text' + (', pair' if fmt.get("pairs") else '') + ', return_tensors="pt")')
    pipe = "" if fmt.get("template") else """
or `pipeline("text-classification", model=path)("a text to label")` (the raw text is this run's input).
"""
    return f"""## Use (plain transformers, no labeltune)

```python
import json
from transformers import AutoModelForSequenceClassification, AutoTokenizer

path = "PATH_OR_HUB_ID"
tok, model = AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(path)
fmt = json.load(open(f"{{path}}/input_format.json"))            # the run's input format (template)
text = "a text to label"
logits = model(**{line}).logits[0]
print(model.config.id2label[int(logits.argmax())])
```
{pipe}"""
