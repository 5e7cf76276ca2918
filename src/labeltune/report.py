"""The training record of a run (metrics.json, train_log.jsonl, tensorboard/, plots/) and its figures:
learning curves, confusion matrices, per-entity F1 as PNG files (matplotlib, imported lazily, Agg)."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Sequence

__all__ = ["write_training_record", "plot_learning_curves", "plot_confusion_matrix", "plot_entity_f1", "pyplot"]

log = logging.getLogger(__name__)


def write_training_record(folder: Path, model) -> None:
    """metrics.json, train_log.jsonl, tensorboard/ and plots/ of a trained ``model`` into ``folder``."""
    from .atomic import write_json_atomic, write_text_atomic

    write_json_atomic(folder / "metrics.json", model.metrics)
    write_text_atomic(folder / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in model.train_log))
    _tensorboard(folder / "tensorboard", model.train_log)
    if importlib.util.find_spec("matplotlib") is None:  # a bare GPU machine: the run is complete without plots
        log.warning("matplotlib is not installed: no plots/ in %s (pip install matplotlib)", folder)
        return
    plots = folder / "plots"
    plots.mkdir(exist_ok=True)
    metric_name, _ = model.task.primary_metric(model.labels)
    if model.train_log:
        plot_learning_curves(model.train_log, plots / "learning_curves.png", metric_name)
    model.task.plots(plots, model.metrics, model.labels)


def _tensorboard(folder: Path, train_log) -> None:
    """Mirror the JSONL log into TensorBoard event files when tensorboard is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return
    with SummaryWriter(str(folder)) as writer:
        for r in train_log:
            for k, v in r.items():
                if k not in ("event", "step", "epoch") and isinstance(v, (int, float)):
                    writer.add_scalar(f"{r['event']}/{k}", v, r["step"])


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(log: Sequence[dict], path: Path, metric: str) -> None:
    """Training loss per logged step and the eval metric per epoch, on a shared step axis."""
    plt = pyplot()
    steps = [r["step"] for r in log if "loss" in r]
    losses = [r["loss"] for r in log if "loss" in r]
    evals = [r for r in log if r.get("event") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, color="tab:blue", label="train loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss", color="tab:blue")
    if evals:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in evals], [r[metric] for r in evals], "o-", color="tab:orange", label=f"eval {metric}")
        if any("eval_loss" in r for r in evals):
            ax.plot([r["step"] for r in evals], [r.get("eval_loss") for r in evals], "s--", color="tab:green", label="eval loss")
        ax2.set_ylabel(f"eval {metric}", color="tab:orange")
    ax.legend(loc="upper left")
    ax.set_title("learning curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(curves: dict[str, dict], path: Path) -> None:
    """Reliability diagram: per bin of top-label score, accuracy against mean score (the diagonal is
    perfect calibration); one line per curve ({"before": reliability, "after": ...}), ECE in the legend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for name, (curve, ece) in curves.items():
        pts = [(c, a) for c, a, k in zip(curve["confidence"], curve["accuracy"], curve["count"]) if k]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("score of the predicted label")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title("calibration on the evaluation data")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], names: Sequence[str], path: Path, title: str = "") -> None:
    plt = pyplot()
    n = len(names)
    size = min(2 + 0.5 * n, 14)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((max(r) for r in matrix), default=0)
    if n <= 30:
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > peak / 2 else "black", fontsize=8)
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_entity_f1(per_type: dict, path: Path) -> None:
    """Bar chart of entity-level precision / recall / F1 per type."""
    plt = pyplot()
    types = list(per_type)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(types)), 4))
    width = 0.27
    for k, key in enumerate(("precision", "recall", "f1")):
        ax.bar([i + (k - 1) * width for i in range(len(types))], [per_type[t][key] for t in types], width, label=key)
    ax.set_xticks(range(len(types)), types)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("entity scores per type")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
