"""Scores a user can read as probabilities (sequence task).

Temperature scaling (Guo et al. 2017): one scalar T > 0 divides the logits, fitted by minimising the
negative log-likelihood on held-out data (the evaluation split, or a part of the training data set
aside with ``--calibration-split``). It never changes the argmax, only how confident the scores are.
Multi-label runs get a decision threshold per label instead (the sigmoid threshold that maximises
that label's F1 on the held-out data). Both are stored in the run as calibration.json and applied
by predict / serve / export.

Expected calibration error (ECE): the top label's score binned into 15 equal-width bins; the
weighted mean over bins of |accuracy - mean score|.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

__all__ = ["Calibration", "fit_temperature", "fit_thresholds", "expected_calibration_error", "reliability",
           "calibrate", "FILE"]

FILE = "calibration.json"
BINS = 15


@dataclass
class Calibration:
    """What calibration.json holds. temperature 1.0 and no thresholds: the identity."""

    temperature: float = 1.0
    thresholds: dict[str, float] | None = None  # multi-label: per label, on sigmoid scores
    fitted_on: str = ""  # which data, how many examples
    ece_before: float | None = None
    ece_after: float | None = None
    nll_before: float | None = None
    nll_after: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        from .atomic import write_json_atomic

        write_json_atomic(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def fit_temperature(logits, targets) -> float:
    """T minimising the NLL of softmax(logits / T) on (N, L) logits and (N,) class ids; searched over
    log T (T in [0.05, 20]) so that T stays positive. Golden-section search: the NLL is convex in 1/T,
    hence unimodal in log T."""
    import torch
    import torch.nn.functional as F

    z, y = torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(targets, dtype=torch.long)

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(z / torch.exp(torch.tensor(log_t, dtype=torch.float64)), y))

    lo, hi = -3.0, 3.0
    g = (5 ** 0.5 - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(80):  # interval shrinks by 0.618 each step: 6 * 0.618^80 ~ 1e-16
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    import math

    return float(math.exp((lo + hi) / 2))


def fit_thresholds(logits, targets, names: Sequence[str]) -> dict[str, float]:
    """Per label, the sigmoid threshold (among the observed scores, and 0.5) maximising its F1."""
    import numpy as np
    import torch
    from sklearn.metrics import f1_score

    p = torch.sigmoid(torch.as_tensor(logits, dtype=torch.float64)).numpy()
    y = np.asarray(targets, dtype=int)
    out = {}
    for j, name in enumerate(names):
        candidates = np.unique(np.concatenate([p[:, j], [0.5]]))
        scores = [f1_score(y[:, j], (p[:, j] >= c).astype(int), zero_division=0) for c in candidates]
        best = max(scores)
        # among equally good thresholds, the one nearest 0.5 (ties are common on small data)
        out[name] = float(min((c for c, s in zip(candidates, scores) if s == best), key=lambda c: abs(c - 0.5)))
    return out


def expected_calibration_error(probs, targets, bins: int = BINS) -> float:
    """(N, L) probabilities, (N,) class ids -> ECE of the top label (equal-width bins on [0, 1])."""
    conf, acc, count = reliability(probs, targets, bins)
    n = sum(count)
    return float(sum(c * abs(a - f) for a, f, c in zip(acc, conf, count) if c) / max(n, 1))


def reliability(probs, targets, bins: int = BINS) -> tuple[list[float], list[float], list[int]]:
    """Per bin of top-label score: (mean score, accuracy, count); empty bins give 0, 0, 0."""
    import torch

    p = torch.as_tensor(probs, dtype=torch.float64)
    y = torch.as_tensor(targets, dtype=torch.long)
    top, pred = p.max(-1)
    right = (pred == y).double()
    idx = torch.clamp((top * bins).long(), max=bins - 1)  # a score of exactly 1.0 goes in the last bin
    conf, acc, count = [], [], []
    for b in range(bins):
        sel = idx == b
        k = int(sel.sum())
        count.append(k)
        conf.append(float(top[sel].mean()) if k else 0.0)
        acc.append(float(right[sel].mean()) if k else 0.0)
    return conf, acc, count


def calibrate(logits, targets, problem_type: str, names: Sequence[str], fitted_on: str) -> Calibration:
    """Fit on held-out (logits, targets): a temperature (single label) or per-label thresholds (multi)."""
    import torch
    import torch.nn.functional as F

    z = torch.as_tensor(logits, dtype=torch.float64)
    if problem_type == "multi_label":
        return Calibration(thresholds=fit_thresholds(z, targets, names), fitted_on=fitted_on)
    y = torch.as_tensor(targets, dtype=torch.long)
    t = fit_temperature(z, y)
    before, after = torch.softmax(z, -1), torch.softmax(z / t, -1)
    return Calibration(temperature=t, fitted_on=fitted_on,
                       ece_before=expected_calibration_error(before, y), ece_after=expected_calibration_error(after, y),
                       nll_before=float(F.cross_entropy(z, y)), nll_after=float(F.cross_entropy(z / t, y)))
