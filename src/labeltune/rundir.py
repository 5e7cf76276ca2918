"""The run directory: the one contract between train, evaluate, predict, serve, export and bench.

    RUN/config.json        resolved RunConfig (template, head dropout … as used)
    RUN/labels.json        label names in id order, problem type
    RUN/adapter/           PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)
    RUN/backbone/          instead of adapter/ in an exported run: the backbone with LoRA merged in
    RUN/head.safetensors   label head
    RUN/tokenizer/         tokenizer files
    RUN/backbone.json      backbone reference (name, resolved source, family, versions; "merged" when exported)
    RUN/calibration.json   sequence task, when fitted: temperature (or per-label thresholds), where fitted, ECE
    RUN/metrics.json       last evaluation (+ "history": one entry per epoch); the one file evaluate rewrites
    RUN/train_log.jsonl    one JSON object per logged step / evaluation
    RUN/tensorboard/       the same log as TensorBoard events (when tensorboard is installed)
    RUN/plots/*.png        learning curves, confusion matrix (or per-entity F1), calibration (reliability)
    RUN/README.md          model card: YAML front matter (labels, metrics, base model, settings) + how to load

A run is written into a temporary folder and renamed into place (``atomic_run_dir``), so no verb ever
sees half a run. Runs written by older versions are read through ``read_run``'s migrations.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .atomic import atomic_directory, write_json_atomic
from .errors import ConfigError

__all__ = ["REQUIRED", "EVALUATE_WRITES", "TRAINING_KEYS", "check_output", "atomic_run_dir", "is_merged", "local_run_path",
           "check_complete", "read_run", "write_backbone_info", "RunFiles"]

REQUIRED = ("config.json", "labels.json", "head.safetensors", "tokenizer", "backbone.json")
# what `LabelModel.from_pretrained` fetches of a run kept in a Hugging Face Hub repository
DOWNLOAD_PATTERNS = ("config.json", "labels.json", "head.safetensors", "backbone.json", "metrics.json", "README.md",
                     "calibration.json",
                     "tokenizer/*", "adapter/*", "backbone/*")
ADAPTER, MERGED = "adapter", "backbone"
EVALUATE_WRITES = "metrics.json"  # evaluate replaces it (keeping TRAINING_KEYS from training) and README.md
TRAINING_KEYS = ("history", "best_epoch", "train_time_s", "train_real_tokens_per_s", "train_examples", "recipe")


def check_output(output: str | Path, overwrite: bool = False) -> None:
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output} is a file; --output needs a directory path")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise ConfigError(f"{output} already exists and is not empty; choose another --output or pass --overwrite")


@contextmanager
def atomic_run_dir(output: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``output``; on success it replaces ``output`` in one rename."""
    check_output(output, overwrite)
    with atomic_directory(output, replace=True) as tmp:
        yield tmp


def is_merged(path: str | Path) -> bool:
    """An exported run: backbone/ (LoRA merged in) instead of adapter/."""
    return (Path(path) / MERGED).is_dir()


def check_complete(path: str | Path) -> None:
    path = Path(path)
    needed = (*REQUIRED, MERGED if is_merged(path) else ADAPTER)
    missing = [f for f in needed if not (path / f).exists()]
    if missing:
        raise ConfigError(f"{path} is not a complete labeltune run (missing {', '.join(missing)}); "
                          "give the --output directory of a finished `labeltune train`")


class RunFiles:
    """What ``read_run`` found: settings, labels, backbone reference and where the weights are."""

    def __init__(self, path: Path, config, labels, info: dict[str, Any]):
        self.path, self.config, self.labels, self.info = path, config, labels, info
        self.merged = is_merged(path)
        self.backbone = str(path / MERGED) if self.merged else config.model.name
        self.adapter = None if self.merged else path / ADAPTER
        self.tokenizer = path / "tokenizer"
        self.head = path / "head.safetensors"
        self.max_pools_closing = False

    @property
    def written_by(self) -> str:
        return self.info.get("versions", {}).get("labeltune", "0")


def read_run(path: str | Path) -> RunFiles:
    """Check and read a run directory, applying the migrations of runs from older versions:
    - no ``data.template`` (before templates existed): the texts were fed raw, ``none``;
    - no ``model.head_bias`` (before 0.4): every head had a bias;
    - no ``lora.layers`` (before 0.10): every decoder layer had adapters;
    - no ``model.depth`` (before 0.11): every decoder layer ran (the token task's default is now 0.67, so
      leaving it unset would cut an older token run's backbone when it is loaded, saved or exported);
    - written before 0.2 with max pooling: the template's closing tokens were pooled
      (``RunFiles.max_pools_closing``)."""
    from packaging.version import Version

    from .config import RunConfig
    from .data.labels import LabelMap

    path = Path(path)
    check_complete(path)
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    config = RunConfig.from_dict(raw)
    if "template" not in raw.get("data", {}):
        config = config.with_overrides({"data": {"template": "none"}})
    if "head_bias" not in raw.get("model", {}):
        config = config.with_overrides({"model": {"head_bias": True}})
    if "layers" not in raw.get("lora", {}):
        config = config.with_overrides({"lora": {"layers": "all"}})
    if "depth" not in raw.get("model", {}):
        config = config.with_overrides({"model": {"depth": "all"}})
    info = json.loads((path / "backbone.json").read_text(encoding="utf-8"))
    files = RunFiles(path, config, LabelMap.load(path / "labels.json"), info)
    files.max_pools_closing = config.model.pooling == "max" and (
        Version(files.written_by) < Version("0.2") or bool(info.get("max_pools_closing")))
    return files


def write_backbone_info(path: Path, name: str, source: str, base_config, **extra) -> None:
    import peft
    import torch
    import transformers

    from . import __version__

    write_json_atomic(path / "backbone.json", {
        "name": name, "source": source, "model_type": base_config.model_type,
        "num_hidden_layers": base_config.num_hidden_layers, "hidden_size": base_config.hidden_size,
        "versions": {"labeltune": __version__, "transformers": transformers.__version__, "peft": peft.__version__,
                     "torch": torch.__version__}, **extra})


def local_run_path(path: str | Path) -> Path:
    """A local run directory, or a Hub id (``owner/name``: no such local path, and no local folder
    ``owner`` either, so a mistyped ``runs/sst2x`` stays a local error) whose run files are downloaded
    with huggingface_hub (only the run directory's files, not a whole model repository)."""
    local = Path(path).expanduser()
    text = str(path)
    if local.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1 or local.parent.exists():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, allow_patterns=list(DOWNLOAD_PATTERNS)))
    except Exception as e:  # offline, unknown repository, no permission
        raise ConfigError(f"{path}: no such run directory, and fetching it from the Hugging Face Hub failed "
                          f"({type(e).__name__}: {e}); give a local run directory or check the repository id") from None
