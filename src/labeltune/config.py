"""Settings as validated dataclasses that round-trip through JSON/YAML.

Unknown keys are ignored with a warning (a newer run directory still loads); invalid values raise
ConfigError in ``__post_init__`` with the accepted values.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = [
    "parse_unmask",
    "ModelSettings",
    "LoraSettings",
    "DataSettings",
    "TrainSettings",
    "RunConfig",
    "FLAT_SETTINGS",
    "parse_depth",
]

TASKS = ("sequence", "token")
POOLINGS = ("last", "mean", "max")
PROBLEM_TYPES = ("single_label", "multi_label", "regression")
ALIGNMENTS = ("first", "last", "mean", "all")
ATTN_BACKENDS = ("sdpa", "eager")
BATCHING = ("packed", "bucketed", "padded")
HEAD_INITS = ("random", "labels")


def _check(value, allowed, name):
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {', '.join(map(str, allowed))}")


def parse_depth(spec, num_layers: int | None) -> int:
    """'all' | 'K' (the first K decoder layers) | 'F' (a fraction in (0, 1) of them, at least one) ->
    how many layers run (``model.depth``). With ``num_layers=None`` only the syntax is checked (returns 0)."""
    text, n = str(spec).strip().lower(), num_layers
    if text == "all":
        return n or 0
    try:
        value = float(text) if "." in text else int(text)
    except ValueError:
        value = None
    if value is None or (isinstance(value, float) and not 0.0 < value < 1.0):
        raise ConfigError(f"depth={spec!r} is not valid; use all, K (the first K decoder layers) or a fraction "
                          "like 0.67 (two thirds of them)")
    if isinstance(value, float):
        return max(1, round(value * n)) if n else 0
    if value < 1:
        raise ConfigError(f"depth={spec!r} keeps no decoder layer; use 1 or more, or all")
    if n is not None and value > n:
        raise ConfigError(f"depth={spec!r}: this model has {n} decoder layers; use 1 to {n} or all")
    return value if n else 0


def parse_unmask(spec: str, num_layers: int | None, setting: str = "unmask") -> frozenset[int]:
    """'none' | 'all' | 'from:K' | 'from:F' | 'i,j,k' -> a set of layer indices (the bidirectional
    layers for ``unmask``, the adapted ones for ``lora.layers``; K a layer index; F a fraction of the
    depth in [0, 1): from:0.33 of 30 layers = from:10).

    With ``num_layers=None`` only the syntax is checked; ``setting`` names the setting in errors.
    """
    spec = str(spec).strip().lower()
    n = num_layers if num_layers is not None else 10**6
    if spec in ("none", ""):
        return frozenset()
    if spec == "all":
        return frozenset(range(n)) if num_layers is not None else frozenset()
    try:
        if spec.startswith("from:"):
            value = spec[5:]
            if "." in value:  # a fraction of the depth: from:0.33 = the last two thirds of the layers
                fraction = float(value)
                if not 0.0 <= fraction < 1.0:
                    raise ValueError(value)
                k = round(fraction * n) if num_layers is not None else 0
            else:
                k = int(value)
            layers = set(range(k, n)) if num_layers is not None else {k}
            if k < 0 or (num_layers is not None and k >= num_layers):
                raise IndexError(k)
        else:
            layers = {int(x) for x in spec.split(",") if x.strip()}
    except ValueError:
        raise ConfigError(f"{setting}={spec!r} is not valid; use {'none, ' if setting == 'unmask' else ''}all, from:K (a layer), from:F (a fraction in "
                          "[0, 1) of the depth, e.g. from:0.33) or a list like 0,5,11") from None
    except IndexError:
        raise ConfigError(f"{setting}={spec!r}: K must be in 0..{n - 1} (the model has {n} layers)") from None
    bad = sorted(i for i in layers if i < 0 or i >= n)
    if bad:
        raise ConfigError(f"{setting}={spec!r}: layers {bad} do not exist; the model has layers 0..{n - 1}")
    return frozenset(layers)


def _from_dict(cls, data: dict[str, Any] | None):
    """Build ``cls`` from a dict, warning about (and ignoring) keys it does not know."""
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        warnings.warn(f"{cls.__name__}: ignoring unknown settings {unknown}", stacklevel=3)
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ModelSettings:
    name: str = field(default="default", metadata={"help": "'default' (embedded SmolLM2-135M-Instruct), hub id, local dir or .gguf file"})
    task: str = field(default="sequence", metadata={"help": "sequence (one label per text) or token (a tag per word)"})
    pooling: str = field(default="last", metadata={"help": "sequence pooling over real tokens: last, mean or max"})
    problem_type: str = field(default="single_label", metadata={"help": "single_label (CE), multi_label (BCE), regression (MSE)"})
    unmask: str | None = field(default=None, metadata={"help": "bidirectional layers: none, all, from:K (a layer), from:F (a fraction of the depth) or i,j,k; None: the task's default (sequence none, token all)"})
    attn_implementation: str = field(default="sdpa", metadata={"help": "sdpa or eager"})
    depth: str | None = field(default=None, metadata={"help": "decoder layers that run: all, K (the first K) or a fraction (0.67: the lower two thirds); the head reads the last one's output through the model's final norm, and the layers above are dropped after loading, never computed; None: the task's default (sequence all, token 0.67). Saved as the number of layers"})
    window_pooling: str = field(default="mean", metadata={"help": "long_documents=window: how a text's window states are combined before the head: mean, max, attention (a learned query; the mean at step 0), or last (the last window's state alone: with window_memory, the window that has read the most of the text)"})
    window_memory: bool = field(default=False, metadata={"help": "long_documents=window, sequence task: each window also attends to its text's previous window (its keys and values in every layer, no gradient: Transformer-XL's recurrence), so context flows across windows; windows then follow one another (default stride: a whole window)"})
    quantize: str = field(default="none", metadata={"help": "none, 4bit or 8bit: the frozen base weights loaded quantised through bitsandbytes (QLoRA; CUDA only); LoRA and the head stay in full precision"})
    head_dropout: float | None = field(default=None, metadata={"help": "dropout before the head (None: the task's default, 0.1 token task, 0 sequence)"})
    label_alignment: str = field(default="first", metadata={"help": "token task: which sub-words carry a word's label"})
    threshold: float = field(default=0.5, metadata={"help": "multi_label decision threshold on sigmoid scores"})
    head_bias: bool | None = field(default=None, metadata={"help": "a bias in the label head (None: the task's default: none for the sequence task, as the paper and the stock *ForSequenceClassification, so `export --format transformers` can write it; one for the token task, as *ForTokenClassification)"})
    head_init: str = field(default="random", metadata={"help": "label head at step 0: random, or labels (each label's row = the model's output embedding of its name's first token, so step 0 scores as zero-shot prompting; sequence task)"})
    label_words: dict | None = field(default=None, metadata={"help": "the word for each label name that head_init=labels reads ({'0': 'negative', '1': 'positive'}, or '0=negative,1=positive'); default: the names"})

    def __post_init__(self):
        _check(self.task, TASKS, "task")
        _check(self.pooling, POOLINGS, "pooling")
        _check(self.problem_type, PROBLEM_TYPES, "problem_type")
        _check(self.attn_implementation, ATTN_BACKENDS, "attn_implementation")
        _check(self.quantize, ("none", "4bit", "8bit"), "quantize")
        _check(self.window_pooling, ("mean", "max", "attention", "last"), "window_pooling")
        _check(self.label_alignment, ALIGNMENTS, "label_alignment")
        _check(self.head_init, HEAD_INITS, "head_init")
        if isinstance(self.label_words, str):
            pairs = [p.split("=", 1) for p in self.label_words.split(",") if p.strip()]
            if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
                raise ConfigError(f"label_words={self.label_words!r}: write name=word pairs, e.g. 0=negative,1=positive")
            self.label_words = {k.strip(): v.strip() for k, v in pairs}
        if self.label_words is not None:
            if not isinstance(self.label_words, dict) or not all(str(v).strip() for v in self.label_words.values()):
                raise ConfigError("label_words must map label names to non-empty words")
            self.label_words = {str(k): str(v) for k, v in self.label_words.items()}
        # None = the task's default, resolved (and saved) when the model is built: filling it here
        # would let a default of one task survive a later switch of task (with_overrides)
        if self.head_dropout is not None and not 0.0 <= self.head_dropout < 1.0:
            raise ConfigError(f"head_dropout={self.head_dropout} must be in [0, 1)")
        if self.depth is not None:
            self.depth = str(self.depth).strip().lower()
            parse_depth(self.depth, num_layers=None)  # syntax; the layer count is checked at load
        if self.unmask is not None:
            self.unmask = str(self.unmask).replace(" ", "")
            parse_unmask(self.unmask, num_layers=None)  # syntax; the layer range is checked at load
        from .tasks import get_task

        get_task(self.task).check_settings(self)


@dataclass
class LoraSettings:
    r: int | None = field(default=None, metadata={"help": "LoRA rank (paper: 12); None: the task's (sequence 16, token 32)"})
    alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (paper: 32); None: twice the rank"})
    dropout: float | None = field(default=None, metadata={"help": "LoRA dropout (paper: 0.1); None: the task's (0.05 for both; 0 trains faster on a CPU, docs/BENCHMARKS.md)"})
    target_modules: str | None = field(default=None, metadata={"help": "comma list of module names, or all-linear (paper: q_proj,v_proj); None: the task's (sequence q_proj,k_proj,v_proj,o_proj; token all-linear); fused qkv_proj stands in for q/k/v where a family has it"})
    layers: str | None = field(default=None, metadata={"help": "decoder layers that get adapters: all, from:K (a layer), from:F (a fraction of the depth) or i,j,k; the backward pass stops at the lowest adapted layer, so from:0.5 trains faster; None: the task's (all)"})

    def __post_init__(self):
        if (self.r is not None and self.r <= 0) or (self.alpha is not None and self.alpha <= 0):
            raise ConfigError(f"LoRA r={self.r} and alpha={self.alpha} must be positive")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LoRA dropout={self.dropout} must be in [0, 1)")
        if isinstance(self.target_modules, (list, tuple)):
            self.target_modules = ",".join(self.target_modules)
        if self.target_modules is not None and not self.target_modules.strip():
            raise ConfigError("LoRA target_modules is empty; give e.g. q_proj,v_proj or all-linear")
        if self.layers is not None:
            self.layers = str(self.layers).replace(" ", "").lower()
            if self.layers in ("none", ""):
                raise ConfigError(f"lora.layers={self.layers!r} adapts nothing; give all, from:K, from:F or i,j,k")
            parse_unmask(self.layers, num_layers=None, setting="lora.layers")  # syntax; the range is checked at load

    def modules(self) -> str | list[str]:
        t = self.target_modules.strip()
        return t if t == "all-linear" else [m.strip() for m in t.split(",") if m.strip()]


@dataclass
class DataSettings:
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    text_pair_column: str | None = field(default=None, metadata={"help": "second text column for pair tasks"})
    label_column: str = field(default="label", metadata={"help": "column holding the label (name or int)"})
    tokens_column: str = field(default="tokens", metadata={"help": "token task, JSONL/datasets: word list column"})
    tags_column: str = field(default="tags", metadata={"help": "token task, JSONL/datasets: tag list column"})
    document_column: str = field(default="document", metadata={"help": "token task, JSONL/datasets: column naming each sentence's document (consecutive rows with the same value; CoNLL files mark documents with -DOCSTART- lines); long_documents=window reads a sentence with its document around it"})
    format: str = field(default="auto", metadata={"help": "auto (by extension), csv, tsv, jsonl, parquet, label-text, conll"})
    label_delimiter: str | None = field(default=None, metadata={"help": "keep the part of each label before this (TREC 'DESC:manner' -> 'DESC' with ':')"})
    conll_tag_column: int = field(default=-1, metadata={"help": "CoNLL: index of the tag column (-1 = last)"})
    max_length: int = field(default=128, metadata={"help": "tokens per example; longer ones are truncated and counted"})
    long_documents: str = field(default="truncate", metadata={"help": "texts longer than max_length: truncate (keep the start), window (read whole, in overlapping windows of max_length tokens: the sequence task pools each and aggregates them per text by model.window_pooling; the token task tags each word in the window where it has most context on both sides, and reads each sentence with its document's neighbouring words as context), or stream (sequence task, last pooling: read whole as one sequence in consecutive chunks of max_length tokens, each attending to the keys and values of all chunks before it, so the text's state is that of one forward over all of it and so are its gradients (chunks replayed last to first), while activations stay those of max_length tokens a text)"})
    window_stride: int = field(default=0, metadata={"help": "long_documents=window: text tokens between the starts of two windows (0: half a window)"})
    append_eos: bool = field(default=False, metadata={"help": "sequence task: end every text with the EOS token (a fixed token for last pooling)"})
    template: str | None = field(default="auto", metadata={"help": "sequence task: wrap each text: auto (the model's chat template, text as the user turn; none without one), none, or e.g. 'Review: {text}\\nSentiment:' ({pair}: second text; {{ }} for literal braces)"})

    def __post_init__(self):
        _check(self.format, ("auto", "csv", "tsv", "jsonl", "parquet", "label-text", "conll"), "format")
        _check(self.long_documents, ("truncate", "window", "stream"), "long_documents")
        if self.window_stride < 0:
            raise ConfigError(f"window_stride={self.window_stride} must be >= 0 (0: half a window)")
        if self.long_documents != "truncate" and self.text_pair_column:
            raise ConfigError(f"long_documents={self.long_documents} reads single texts; pair runs truncate "
                              "(long_documents=truncate)")
        if self.max_length < 2:
            raise ConfigError(f"max_length={self.max_length} must be at least 2")
        if self.template in ("none", ""):
            self.template = None
        if self.template not in (None, "auto"):
            try:
                self.template.format(text="", pair="")
            except (KeyError, IndexError, ValueError) as e:
                raise ConfigError(f"template {self.template!r} is not a valid format string ({e!r}); use {{text}} "
                                  "(and {pair}) as fields and {{ }} for literal braces") from None
            if "{text}" not in self.template:
                raise ConfigError(f"template {self.template!r} has no {{text}} field; write where the text goes")


@dataclass
class TrainSettings:
    epochs: float | None = field(default=None, metadata={"help": "passes over the training data (fractions allowed); None: sized to the data (labeltune.recipe)"})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate for LoRA (the head: x head_lr_scale); None: the recipe's (1e-3)"})
    head_lr_scale: float | None = field(default=None, metadata={"help": "the head's learning rate is lr x this; None: the task's (sequence 10: a fresh head needs larger steps than LoRA, +2 points on SST-2; token 1)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float | None = field(default=None, metadata={"help": "fraction of steps with linear warm-up, then linear decay to 0; None: the recipe's (0.1)"})
    batch_size: int | None = field(default=None, metadata={"help": "examples per step (padded/bucketed), upper bound when packed; None: sized to the data (8 / 16 / 32)"})
    max_tokens_per_batch: int = field(default=0, metadata={"help": "token budget per step (0: batch_size x max_length)"})
    batching: str = field(default="bucketed", metadata={"help": "padded (file order), bucketed (length-sorted token budget) or packed"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 disables)"})
    class_weights: str = field(default="none", metadata={"help": "none, balanced, or comma list of weights in label order"})
    focal_gamma: float = field(default=0.0, metadata={"help": "single-label loss: focal loss exponent (Lin et al. 2017; (1 - p)^gamma down-weights the examples or tokens already right, e.g. the many O tags); 0: cross-entropy"})
    ema_decay: float = field(default=0.0, metadata={"help": "evaluate and keep an exponential moving average of the trainable weights with this decay (e.g. 0.99: ~the last 100 steps; weight_average.py); 0: the last weights"})
    seed: int = field(default=42, metadata={"help": "seed for initialisation, shuffling and dropout"})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (bf16 where the hardware has it natively: recent GPUs, CPUs with AVX512-BF16/AMX; else fp32), no, bf16, fp16"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward to save memory"})
    eval_batch_tokens: int = field(default=4096, metadata={"help": "token budget per inference batch"})
    max_steps: int = field(default=0, metadata={"help": "stop after this many optimiser steps (0: no limit)"})
    time_budget_s: float = field(default=0.0, metadata={"help": "stop training after this many seconds (0: no limit); the schedule assumes the full run"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers"})
    checkpoint_every: int = field(default=0, metadata={"help": "with an output directory, a checkpoint every N optimiser steps (0: at each epoch's end only), for --resume"})
    keep_checkpoints: int = field(default=2, metadata={"help": "how many of the newest checkpoints to keep while training (removed once the run is written)"})
    calibration: str = field(default="auto", metadata={"help": "sequence task: auto (fit a temperature, or per-label thresholds for multi-label, on held-out data: the calibration split, else the evaluation data) or none"})
    calibration_split: float = field(default=0.0, metadata={"help": "fraction of the training examples set aside (not trained on) to fit the calibration; 0: fit on the evaluation data"})

    def __post_init__(self):
        _check(self.batching, BATCHING, "batching")
        _check(self.mixed_precision, ("auto", "no", "bf16", "fp16"), "mixed_precision")
        # None = sized to the data when training starts (labeltune.recipe); the run saves the values used
        if any(v is not None and v <= 0 for v in (self.epochs, self.lr, self.batch_size, self.head_lr_scale)) or \
                self.grad_accum <= 0:
            raise ConfigError("epochs, lr, head_lr_scale, batch_size and grad_accum must be positive")
        _check(self.calibration, ("auto", "none"), "calibration")
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ConfigError("checkpoint_every must be >= 0 and keep_checkpoints >= 1")
        if not 0.0 <= self.calibration_split < 0.9:
            raise ConfigError(f"calibration_split={self.calibration_split} must be in [0, 0.9)")
        if self.warmup_ratio is not None and not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay={self.ema_decay} must be in [0, 1) (0: off; 0.99 averages ~the last 100 steps)")
        if not 0.0 <= self.focal_gamma <= 10.0:
            raise ConfigError(f"focal_gamma={self.focal_gamma} must be in [0, 10] (0: cross-entropy; 2 is usual)")
        if self.class_weights not in ("none", "balanced"):
            try:
                [float(w) for w in str(self.class_weights).split(",")]
            except ValueError:
                raise ConfigError(f"class_weights={self.class_weights!r}: use none, balanced or numbers like 1,2.5") from None


@dataclass
class RunConfig:
    """Everything that defines a run; saved as RUN/config.json beside the weights."""

    model: ModelSettings = field(default_factory=ModelSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self):
        from .tasks import get_task

        get_task(self.model.task).check_run(self)
        if self.model.window_memory and self.data.long_documents != "window":
            raise ConfigError("window_memory links the windows of long texts; set long_documents=window too")
        if self.model.window_memory and self.train.gradient_checkpointing:
            raise ConfigError("window_memory needs each window's keys and values, which gradient checkpointing "
                              "does not keep; turn one of them off (memory is bounded by the windows already)")
        if self.data.long_documents == "stream":
            if self.train.gradient_checkpointing:
                raise ConfigError("long_documents=stream needs each chunk's keys and values, which gradient "
                                  "checkpointing does not keep; turn it off (a chunk's activations are bounded already)")
            if self.model.pooling != "last":
                raise ConfigError(f"long_documents=stream scores a text from its last token; pooling "
                                  f"{self.model.pooling!r} would pool the last chunk only: set pooling last")
            if self.data.window_stride or self.model.window_pooling != "mean":
                raise ConfigError("window_stride and window_pooling apply to long_documents=window; stream cuts a "
                                  "text into consecutive chunks and scores its last token: leave them unset")
        t, pair = self.data.template, self.data.text_pair_column
        if t not in (None, "auto") and bool(pair) != ("{pair}" in t):
            raise ConfigError(f"template {t!r} " + ("has no {pair} field for text_pair_column " + repr(pair) if pair else
                              "has a {pair} field but no text_pair_column is set") + "; make them agree")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        data = dict(data or {})
        sections = {"model": ModelSettings, "lora": LoraSettings, "data": DataSettings, "train": TrainSettings}
        unknown = sorted(set(data) - set(sections))
        if unknown:
            warnings.warn(f"RunConfig: ignoring unknown sections {unknown}", stacklevel=2)
        return cls(**{k: _from_dict(c, data.get(k)) for k, c in sections.items()})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """Load JSON or YAML (by extension)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror}); check the path") from None
        try:
            data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'} ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping with sections model/lora/data/train")
        return cls.from_dict(data)

    def with_settings(self, **settings: Any) -> "RunConfig":
        """A copy with flat settings applied (``epochs=3, text_column="sentence", lora_r=8``; see
        ``FLAT_SETTINGS``); None values are skipped, unknown names are an error."""
        unknown = sorted(set(settings) - set(FLAT_SETTINGS))
        if unknown:
            raise ConfigError(f"unknown settings {unknown}; known: {', '.join(sorted(FLAT_SETTINGS))}")
        overrides: dict[str, dict[str, Any]] = {}
        for name, value in settings.items():
            section, field_name = FLAT_SETTINGS[name]
            overrides.setdefault(section, {})[field_name] = value
        return self.with_overrides(overrides)

    def with_overrides(self, overrides: dict[str, dict[str, Any]]) -> "RunConfig":
        """A copy with ``{section: {field: value}}`` applied (None values are skipped)."""
        d = self.to_dict()
        for section, values in overrides.items():
            d[section].update({k: v for k, v in values.items() if v is not None})
        return RunConfig.from_dict(d)


def _flat_settings() -> dict[str, tuple[str, str]]:
    """Every setting by one flat name (``--flag`` / keyword): the field's own name, ``lora_`` before
    LoRA's, ``model`` for the model's name. {flat name: (section, field)}."""
    out = {}
    for section, cls in (("model", ModelSettings), ("lora", LoraSettings), ("data", DataSettings),
                         ("train", TrainSettings)):
        for f in dataclasses.fields(cls):
            flat = "model" if (section, f.name) == ("model", "name") else (
                f"lora_{f.name}" if section == "lora" else f.name)
            out[flat] = (section, f.name)
    return out


FLAT_SETTINGS = _flat_settings()
