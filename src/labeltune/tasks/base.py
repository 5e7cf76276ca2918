"""What a task is: everything that differs between one label per text and one tag per word.

train, evaluate, predict, serve, export and bench ask the task; none of them branches on its name.
Task modules import nothing heavy at import time (torch is imported where a method needs it), so
reading and checking data costs no model import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:
    from ..config import ModelSettings, RunConfig
    from ..data.examples import Encoded
    from ..data.labels import LabelMap

__all__ = ["Task", "check_texts"]


def check_texts(texts: Sequence, what: str) -> None:
    """Raw input to predict (a list, a pandas column …): every item a non-empty string of valid Unicode."""
    from ..errors import ConfigError

    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ConfigError(f"{what} #{i + 1} is {'empty' if isinstance(t, str) else repr(t)}; give non-empty strings")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"{what} #{i + 1} holds half of a surrogate pair (not Unicode); remove it") from None


class Task:
    name: str = ""
    uses_template = False  # whether data.template (a wrapper around each text) applies
    default_head_dropout = 0.0
    default_head_bias = True
    default_unmask = "none"
    default_depth = "all"  # decoder layers that run (model.depth)
    default_head_lr_scale = 10.0  # the head's learning rate over LoRA's (train.head_lr_scale)
    # alpha: twice the rank. LoRA dropout 0.05: without it a CPU step is ~20% faster and SST-2 at 2,000
    # scores as well (89.4% vs 88.8%), but the sizes sweep lost at 100 examples (TREC-6 82.2 vs 88.8,
    # SST-2 82.8 vs 84.8) and at 1,000 (-1.2, -1.8) for +0.6 to +2.4 at 300 (docs/RESULTS.md)
    default_lora = {"r": 16, "target_modules": "q_proj,k_proj,v_proj,o_proj", "dropout": 0.05, "layers": "all"}
    min_passes = 0.0  # the recipe's floor on passes over the training data (recipe.py); 0: none
    report_metrics: tuple[str, ...] = ()  # the columns of bench tables
    calibrates = False  # whether ``calibrate`` fits anything (training skips the evaluation pass if not)

    # ---- settings -------------------------------------------------------------------------------
    def check_settings(self, model: "ModelSettings") -> None:
        """Reject model settings this task cannot honour (ConfigError)."""

    def check_run(self, config: "RunConfig") -> None:
        """Reject combinations of sections this task cannot honour (ConfigError)."""

    def with_defaults(self, config: "RunConfig") -> "RunConfig":
        """``config`` with this task's defaults for the settings left at None (head dropout and bias,
        unmasked layers, depth, LoRA rank, alpha, target modules, dropout and layers, the head's lr scale): resolved when a model is built and saved
        with the run, so a later switch of task never inherits another task's default."""
        m, lora = config.model, config.lora
        r = self.default_lora["r"] if lora.r is None else lora.r
        return config.with_overrides({"model": {
            "head_dropout": self.default_head_dropout if m.head_dropout is None else m.head_dropout,
            "head_bias": self.default_head_bias if m.head_bias is None else m.head_bias,
            "unmask": self.default_unmask if m.unmask is None else m.unmask,
            "depth": self.default_depth if m.depth is None else m.depth},
            "lora": {"r": r, "alpha": 2 * r if lora.alpha is None else lora.alpha,
                     "target_modules": lora.target_modules or self.default_lora["target_modules"],
                     "dropout": self.default_lora["dropout"] if lora.dropout is None else lora.dropout,
                     "layers": self.default_lora["layers"] if lora.layers is None else lora.layers},
            "train": {"head_lr_scale": self.default_head_lr_scale if config.train.head_lr_scale is None
                      else config.train.head_lr_scale}})

    # ---- data -----------------------------------------------------------------------------------
    def read(self, source: Any, config: "RunConfig", require_labels: bool = True) -> list:
        """Examples from a path, ``hf:ID:SPLIT`` or data in memory; DataError on the first bad one."""
        raise NotImplementedError

    def iter_read(self, source: Any, config: "RunConfig", require_labels: bool = True) -> Iterator:
        """The examples of ``source`` one at a time (predict streams them in chunks); by default read whole."""
        return iter(self.read(source, config, require_labels))

    def together(self, previous: Any, example: Any, config: "RunConfig") -> bool:
        """Whether ``example`` must be encoded with the one before it (the same document read as
        context): predict's chunks and processes never split such a run of examples."""
        return False

    def from_texts(self, texts: Sequence[str], pairs: Sequence[str] | None, config: "RunConfig") -> list:
        """Unlabelled examples from raw input (predict, serve); ConfigError when pairs do not fit the run."""
        raise NotImplementedError

    def build_labels(self, examples: Sequence, config: "RunConfig") -> "LabelMap":
        raise NotImplementedError

    def encode(self, model, examples: Sequence, with_targets: bool = True, source: str = "data",
               training: bool = False) -> tuple[list["Encoded"], int]:
        """Tokenise for ``model`` (its tokenizer, template, labels, settings); targets from its label
        map when ``with_targets``. Returns (encoded, number of examples truncated)."""
        raise NotImplementedError

    def pieces(self, encoded: Sequence["Encoded"]) -> tuple[list["Encoded"], list[int] | None]:
        """What batching sees: (pieces, owner). A task whose examples split into independent parts
        (the token task's windows) returns the parts and, per part, the index of its example, whose
        logits are the parts' concatenated; otherwise (encoded, None)."""
        return list(encoded), None

    def problem(self, labels: "LabelMap") -> str:
        """What collation builds as targets and the loss compares: single_label, multi_label, regression or token."""
        return labels.problem_type

    def primary_metric(self, labels: "LabelMap") -> tuple[str, bool]:
        """(metric, higher is better): what picks the best epoch."""
        raise NotImplementedError

    def class_weights(self, setting: str, encoded: Sequence["Encoded"], labels: "LabelMap"):
        """Loss weights per label: ``none``, ``balanced`` (n / (labels x count), as scikit-learn) or a
        comma list in label order, for single-label cross-entropy: classes of the sequence task, tags
        of the token task (counted over the units: most are O)."""
        import torch

        from ..errors import ConfigError

        if setting == "none" or labels.problem_type != "single_label":
            return None
        n = len(labels)
        if setting == "balanced":
            counts = torch.bincount(torch.tensor(self.flat_targets(encoded)), minlength=n).float().clamp_min(1)
            return counts.sum() / (n * counts)
        w = torch.tensor([float(x) for x in setting.split(",")])
        if len(w) != n:
            raise ConfigError(f"class_weights has {len(w)} values but there are {n} labels ({', '.join(labels.names)})")
        return w

    def flat_targets(self, encoded: Sequence["Encoded"]) -> list:
        return [e.target for e in encoded]

    # ---- model ----------------------------------------------------------------------------------
    def make_head(self, hidden_size: int, labels: "LabelMap", config: "RunConfig"):
        raise NotImplementedError

    def init_head(self, model) -> None:
        """Set the fresh head's weights (``model.head``) from what the model knows; default: keep them."""

    def head_groups(self, model, batch: dict, ids, pos):
        """((B, T) group id per token, -1 = not read; number of groups): what the head pools."""
        raise NotImplementedError

    def split_logits(self, logits, batch: dict, encoded: Sequence["Encoded"]) -> list:
        """(G, L) logits of a batch -> one tensor per example, in ``batch["order"]``."""
        raise NotImplementedError

    # ---- outputs --------------------------------------------------------------------------------
    def evaluate(self, model, examples: Sequence, encoded: Sequence["Encoded"], logits: list | None = None
                 ) -> tuple[dict, list]:
        """(metrics, predictions) of ``model`` on labelled examples; ``logits``: already computed
        (``model.logits(encoded)``, e.g. gathered from several processes)."""
        raise NotImplementedError

    def prediction_rows(self, model, examples: Sequence, encoded: Sequence["Encoded"]) -> list[dict]:
        """One output row per example, in input order: what predict writes and the server returns."""
        raise NotImplementedError

    def calibrate(self, model, encoded: Sequence["Encoded"], fitted_on: str, logits: list | None = None):
        """A ``calibration.Calibration`` fitted on held-out ``encoded`` (``logits``: already computed), or
        None (the task has none)."""
        return None

    def same_decisions(self, reference: list, other: list, model) -> bool:
        """Whether two sets of per-example logits decide the same (export's check of lower precision)."""
        raise NotImplementedError

    def csv_fields(self, config: "RunConfig", labels: "LabelMap") -> list[str]:
        """The columns of a CSV of predictions: every key a prediction row has."""
        raise NotImplementedError

    @staticmethod
    def csv_row(row: dict, fields: Sequence[str]) -> list:
        """A prediction row flattened for CSV: lists and mappings as JSON, nothing left out."""
        return [json.dumps(row[k], ensure_ascii=False) if isinstance(row.get(k), (list, dict)) else row.get(k)
                for k in fields]

    def plots(self, folder: Path, metrics: dict, labels: "LabelMap") -> None:
        """Task-specific figures beside the learning curves."""
