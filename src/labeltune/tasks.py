"""Task-specific glue between files, the label map, encoding and metrics.

Sequence task: one label per text. (The token task plugs in beside it through the same four
functions, so train/evaluate/predict stay task-agnostic.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .config import RunConfig
from .data.batching import Encoded, encode_texts
from .data.labels import LabelMap
from .data.readers import read_text_examples
from .metrics import multilabel_metrics, regression_metrics, sequence_metrics

__all__ = ["read_examples", "build_label_map", "encode_examples", "evaluate_examples"]


def read_examples(source: str | Path, config: RunConfig, require_labels: bool = True) -> list:
    if config.model.task == "token":
        from .data.conll import read_token_examples

        return read_token_examples(source, config.data, require_labels)
    return read_text_examples(source, config.data, require_labels)


def build_label_map(examples: Sequence, config: RunConfig) -> LabelMap:
    if config.model.task == "token":
        from .data.conll import build_tag_map

        return build_tag_map(examples, config.model.label_alignment)
    return LabelMap.build((e.label for e in examples), config.model.problem_type)


def encode_examples(tokenizer, examples: Sequence, labels: LabelMap | None, config: RunConfig,
                    source: str = "data", training: bool = False) -> tuple[list[Encoded], int]:
    """Tokenise and attach targets (when ``labels`` is given). Returns (encoded, number truncated)."""
    if config.model.task == "token":
        from .data.conll import encode_token_examples

        return encode_token_examples(tokenizer, examples, labels, config, source, training)
    pairs = [e.pair for e in examples] if config.data.text_pair_column else None
    ids, truncated = encode_texts(tokenizer, [e.text for e in examples], pairs, config.data.max_length,
                                     config.data.append_eos, config.data.template)
    targets = [labels.encode(e.label, str(source), e.where) for e in examples] if labels else [None] * len(ids)
    return [Encoded(x, t) for x, t in zip(ids, targets)], truncated


def evaluate_examples(model, examples: Sequence, encoded: Sequence[Encoded]) -> tuple[dict[str, Any], list]:
    """Run the model over ``encoded`` and score it against the encoded targets.

    Returns (metrics, per-example predictions as the model's ``_decode`` gives them).
    """
    if model.config.model.task == "token":
        from .data.conll import evaluate_token_examples

        return evaluate_token_examples(model, examples, encoded)
    logits = model.logits(encoded)
    kind, names = model.labels.problem_type, model.labels.names
    preds = [model._decode(row) for row in logits]
    stacked = torch.stack(logits)
    if kind == "single_label":
        y_true = [e.target for e in encoded]
        metrics = sequence_metrics(y_true, stacked.argmax(-1).tolist(), names)
        metrics["loss"] = float(torch.nn.functional.cross_entropy(stacked, torch.tensor(y_true)))
    elif kind == "multi_label":
        y_true = np.array([e.target for e in encoded], dtype=int)
        y_pred = (torch.sigmoid(stacked) >= model.config.model.threshold).int().numpy()
        metrics = multilabel_metrics(y_true, y_pred, names)
    else:
        metrics = regression_metrics([e.target for e in encoded], stacked[:, 0].tolist())
    return metrics, preds
