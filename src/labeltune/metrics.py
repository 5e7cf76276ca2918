"""Metrics from the reference libraries: scikit-learn for classification, seqeval for entities."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["sequence_metrics", "multilabel_metrics", "regression_metrics", "primary_metric"]


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


def primary_metric(problem: str) -> tuple[str, bool]:
    """(metric name, higher is better) used to pick the best epoch."""
    return {"single_label": ("accuracy", True), "multi_label": ("micro_f1", True),
            "regression": ("mse", False), "token": ("f1", True)}[problem]
