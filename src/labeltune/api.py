"""The Python entry point: ``labeltune.train`` on a file or on data in memory, returning the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .config import RunConfig
from .errors import ConfigError

__all__ = ["train"]


def train(data: Any, eval_data: Any = None, *, output: str | Path | None = None,
          config: RunConfig | dict | str | Path | None = None, overwrite: bool = False, progress: bool = True,
          echo: Callable[[str], None] = print, resume: bool = False, **settings: Any):
    """Fine-tune a decoder on ``data`` and return the trained ``LabelModel``.

    data, eval_data: a path (CSV/TSV/JSONL/Parquet/CoNLL/…), ``hf:ID[,CONFIG]:SPLIT``, a list of dicts,
        a pandas DataFrame or a ``datasets.Dataset``. Sequence task: a text and a label per row
        (``text_column``, ``label_column``); token task: ``tokens`` and ``tags`` lists per row.
    output: also write the run directory here (else call ``model.save_pretrained(path)`` later); checkpoints
        are written beside it while training (``OUTPUT.checkpoints``), and ``resume=True`` continues from them.
    config: a RunConfig, a dict with sections model/lora/data/train, or a YAML/JSON path.
    settings: any setting by its flat name, as the CLI's flags: ``task="token"``, ``model="default"``,
        ``epochs=3``, ``unmask="all"``, ``text_column="sentence"``, ``lora_r=8`` … (``RunConfig``'s
        ``FLAT_SETTINGS``); they override ``config``.

    ``model.metrics`` holds the best epoch's evaluation on ``eval_data`` (and the training record).
    """
    from .training import fit

    if config is None:
        base = RunConfig()
    elif isinstance(config, RunConfig):
        base = config
    elif isinstance(config, dict):
        base = RunConfig.from_dict(config)
    elif isinstance(config, (str, Path)):
        base = RunConfig.load(config)
    else:
        raise ConfigError(f"config of type {type(config).__name__}: give a RunConfig, a dict or a YAML/JSON path")
    return fit(base.with_settings(**settings), data, eval_data, output, overwrite=overwrite, progress=progress,
               echo=echo, resume=resume)
