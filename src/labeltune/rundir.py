"""The run directory: written atomically (temp dir, then rename) so no verb ever sees half a run.

    RUN/config.json        resolved RunConfig
    RUN/labels.json        label names in id order, problem type
    RUN/adapter/           PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)
    RUN/backbone/          instead of adapter/ in an exported run: backbone with LoRA merged in
    RUN/head.safetensors   label head
    RUN/tokenizer/         tokenizer files
    RUN/backbone.json      backbone reference (name, resolved source, family, versions)
    RUN/metrics.json       last evaluation (+ "history": one entry per epoch)
    RUN/train_log.jsonl    one JSON object per logged step / evaluation
    RUN/plots/*.png        learning curves, confusion matrix (or per-entity F1)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError

__all__ = ["atomic_run_dir", "check_output", "write_json_atomic"]


def check_output(output: str | Path, overwrite: bool = False) -> None:
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output} is a file; --output needs a directory path")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise ConfigError(f"{output} already exists and is not empty; choose another --output or pass --overwrite")


@contextmanager
def atomic_run_dir(output: str | Path, overwrite: bool = False):
    """Yield a temp dir beside ``output``; on success it replaces ``output`` in one rename."""
    output = Path(output)
    check_output(output, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        yield tmp
        if output.exists():
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: str | Path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
