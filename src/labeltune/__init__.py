"""labeltune: label-supervised fine-tuning of decoder-only LLMs (LS-LLaMA, LS-unLLaMA).

    import labeltune
    model = labeltune.train("train.csv", "dev.csv", epochs=3)       # or a list of dicts / DataFrame / Dataset
    model.predict("a gorgeous, witty, seductive movie")
    model.save_pretrained("runs/sst2");  labeltune.LabelModel.from_pretrained("runs/sst2")

Importing labeltune loads neither torch nor transformers: the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.12.0"

__all__ = [
    "train",
    "LabelModel",
    "RunConfig",
    "ModelSettings",
    "LoraSettings",
    "DataSettings",
    "TrainSettings",
    "LabeltuneError",
    "DataError",
    "ConfigError",
    "__version__",
]

_WHERE = {"train": "api", "LabelModel": "modeling", "RunConfig": "config", "ModelSettings": "config",
          "LoraSettings": "config", "DataSettings": "config", "TrainSettings": "config",
          "LabeltuneError": "errors", "DataError": "errors", "ConfigError": "errors"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'labeltune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
