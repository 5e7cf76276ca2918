"""Metrics from the reference libraries: scikit-learn for classification, seqeval for entities.
All of labeltune's metrics live here; each task says which it reports."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["sequence_metrics", "multilabel_metrics", "regression_metrics", "token_metrics"]


def sequence_metrics(y_true: Sequence[int], y_pred: Sequence[int], names: Sequence[str]) -> dict:
    """accuracy, macro/micro/weighted F1, per-class precision/recall/F1/support, confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, n in enumerate(names)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": list(names),
        "n": len(y_true),
    }


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "per_class_f1": dict(zip(names, map(float, f1_score(y_true, y_pred, average=None, zero_division=0)))),
        "n": int(len(y_true)),
    }


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    t, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    out = {"mse": float(mean_squared_error(t, p)), "mae": float(mean_absolute_error(t, p)), "n": len(t)}
    if len(t) > 1 and t.std() > 0 and p.std() > 0:
        out["pearson"] = float(pearsonr(t, p)[0])
        out["spearman"] = float(spearmanr(t, p)[0])
    return out


def token_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Entity P/R/F1 (seqeval: default and strict IOB2 modes), per type, token accuracy."""
    try:
        from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
        from seqeval.scheme import IOB2
    except ImportError:
        from .errors import ConfigError

        raise ConfigError("entity metrics need seqeval: pip install 'seqeval>=1.2.2,<1.3' (training without "
                          "--eval and prediction work without it)") from None

    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                    "support": int(v["support"])} for k, v in report.items() if not k.endswith(" avg")}
    return {
        "f1": float(f1_score(gold, pred)), "precision": float(precision_score(gold, pred)),
        "recall": float(recall_score(gold, pred)),
        "strict_f1": float(f1_score(gold, pred, mode="strict", scheme=IOB2)),
        "strict_precision": float(precision_score(gold, pred, mode="strict", scheme=IOB2)),
        "strict_recall": float(recall_score(gold, pred, mode="strict", scheme=IOB2)),
        "token_accuracy": float(accuracy_score(gold, pred)),
        "per_type": per_type, "n": len(gold),
    }
