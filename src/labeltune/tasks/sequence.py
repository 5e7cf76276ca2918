"""The sequence task: one label per text (single-label, multi-label or a regression value), read
from the pooled final states of the text (inside its template)."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ConfigError
from .base import Task, check_texts

__all__ = ["SequenceTask"]

log = logging.getLogger(__name__)

_PRIMARY = {"single_label": ("accuracy", True), "multi_label": ("micro_f1", True), "regression": ("mse", False)}


class SequenceTask(Task):
    name = "sequence"
    uses_template = True
    default_head_dropout = 0.0
    default_head_bias = False  # the paper's head and the stock score layer: exportable to plain transformers
    report_metrics = ("accuracy", "macro_f1")
    calibrates = True  # a temperature, or per-label thresholds (multi-label)

    def check_settings(self, model):
        if model.head_init == "labels" and model.problem_type != "single_label":
            raise ConfigError("head_init=labels needs problem_type=single_label (a word per class)")

    def check_run(self, config):
        if config.train.focal_gamma and config.model.problem_type != "single_label":
            raise ConfigError(f"focal_gamma applies to problem_type=single_label (cross-entropy), not "
                              f"{config.model.problem_type}; leave it at 0")

    # ---- data -----------------------------------------------------------------------------------
    def read(self, source, config, require_labels=True):
        from ..data.readers import read_text_examples

        return read_text_examples(source, config.data, require_labels)

    def iter_read(self, source, config, require_labels=True):
        from ..data.readers import iter_text_examples

        return iter_text_examples(source, config.data, require_labels)

    def from_texts(self, texts, pairs, config):
        from ..data.examples import TextExample

        column = config.data.text_pair_column
        if column and pairs is None:
            raise ConfigError(f"this run was trained on text pairs (column {column!r}); give one pair per text "
                              f"(or a --data file with a {column!r} column)")
        if not column and pairs is not None:
            raise ConfigError("this run was trained on single texts; give no pairs")
        if pairs is not None and len(pairs) != len(texts):
            raise ConfigError(f"{len(texts)} texts but {len(pairs)} pairs; give one pair per text")
        check_texts(texts, "text")
        check_texts(pairs or [], "pair")
        pairs = list(pairs) if pairs is not None else [None] * len(texts)
        # stripped as the data readers strip every text (readers.iter_text_examples): "good film " typed
        # into predict or the server is the input "good film " in a file was, not a different token sequence
        return [TextExample(t.strip(), p.strip() if p is not None else None, None, f"--text #{i + 1}")
                for i, (t, p) in enumerate(zip(texts, pairs))]

    def build_labels(self, examples, config):
        from ..data.labels import LabelMap

        labels = LabelMap.build((e.label for e in examples), config.model.problem_type)
        unknown = sorted(set(config.model.label_words or {}) - set(labels.names))
        if unknown:
            raise ConfigError(f"label_words names {unknown}, which are not labels of the training data "
                              f"({', '.join(labels.names)}); fix the names")
        return labels

    def encode(self, model, examples, with_targets=True, source="data", training=False):
        from ..data.examples import Encoded

        data = model.config.data
        labels = model.labels if with_targets else None
        targets = [labels.encode(e.label, str(source), e.where) for e in examples] if labels else [None] * len(examples)
        if data.long_documents == "window":  # read whole: a long text becomes windows (none is cut)
            windows = model.template.encode_windows([e.text for e in examples], data.max_length, data.window_stride,
                                                    recurrent=model.config.model.window_memory)
            return _as_windows(windows, targets), 0
        if data.long_documents == "stream":  # read whole: one sequence in consecutive chunks (window_memory.py)
            chunks = model.template.encode_stream([e.text for e in examples], data.max_length)
            longest = max((sum(map(len, c)) for c in chunks), default=0)
            limit = getattr(model.base_model.config, "max_position_embeddings", None)  # positions it was trained on
            if limit and longest > limit:
                log.warning("%s: a text of %d tokens streams past the %d positions %s was trained on; its scores "
                            "may suffer (long_documents=window reads any length)", source, longest, limit,
                            model.config.model.name)
            return _as_windows(chunks, targets), 0
        pairs = [e.pair for e in examples] if data.text_pair_column else None
        ids, truncated = model.template.encode([e.text for e in examples], pairs, data.max_length)
        return [Encoded(x, t) for x, t in zip(ids, targets)], truncated

    def primary_metric(self, labels):
        return _PRIMARY[labels.problem_type]

    # ---- model ----------------------------------------------------------------------------------
    def make_head(self, hidden_size, labels, config):
        from ..heads import SequenceHead

        n = 1 if labels.problem_type == "regression" else len(labels)
        return SequenceHead(hidden_size, n, config.model.pooling, config.model.head_dropout, config.model.head_bias,
                            window_attention=config.data.long_documents == "window"
                            and config.model.window_pooling == "attention")

    def init_head(self, model) -> None:
        """head_init=labels: each label's row is the model's output embedding of the first token of its
        word (``label_words``, else its name), bias 0. The pooled state under the chat template is the
        state an instruct model answers from, so step 0 scores as zero-shot prompting on those tokens."""
        import torch

        settings = model.config.model
        if settings.head_init != "labels":
            return
        from ..backbone import output_embeddings

        words = settings.label_words or {}
        table = output_embeddings(model.source, model.base_model)
        ids = []
        for name in model.labels.names:
            pieces = model.tokenizer(words.get(name, name), add_special_tokens=False)["input_ids"]
            if not pieces:
                raise ConfigError(f"label {name!r}: its word {words.get(name, name)!r} has no tokens; set label_words")
            ids.append(pieces[0])
        if len(set(ids)) < len(ids):
            raise ConfigError(f"head_init=labels: labels {model.labels.names} start with the same token; give "
                              "label_words that start differently")
        with torch.no_grad():
            model.head.score.weight.copy_(table[ids].to(model.head.score.weight))
            if model.head.score.bias is not None:
                model.head.score.bias.zero_()

    def head_groups(self, model, batch, ids, pos):
        groups = batch["example_ids"].to(ids.device)
        pooling = model.config.model.pooling
        if pooling in ("mean", "max") and model.template:  # the template's own tokens are context
            groups = model.template.unpool(ids, pos, groups, batch["num_examples"],
                                           closing=pooling == "max" and not model.max_pools_closing)
        return groups, batch["num_examples"]

    def split_logits(self, logits, batch, encoded):
        return list(logits)

    # ---- decisions and outputs ------------------------------------------------------------------
    def decisions(self, logits, model):
        """(E, L) logits -> what the run decides: class ids (single), 0/1 per label (multi, the
        run's threshold on sigmoids) or values (regression). The one place a decision is made."""
        import torch

        kind = model.labels.problem_type
        if kind == "single_label":
            return logits.argmax(-1)  # the temperature never changes it
        if kind == "multi_label":
            cal = model.calibration
            if cal is not None and cal.thresholds:  # per label, tuned on held-out data
                threshold = torch.tensor([cal.thresholds[n] for n in model.labels.names], dtype=logits.dtype)
            else:
                threshold = torch.tensor(model.config.model.threshold, dtype=logits.dtype)
            return (torch.sigmoid(logits) >= threshold.to(logits.device)).int()
        return logits[:, 0]

    @staticmethod
    def probabilities(logits, model):
        """(E, L) logits -> the scores a user reads: softmax of logits / T (the run's temperature, 1
        when uncalibrated), or sigmoids for multi-label."""
        import torch

        if model.labels.problem_type == "multi_label":
            return torch.sigmoid(logits)
        return torch.softmax(logits / model.temperature, -1)

    def decode(self, logits, model) -> list[dict[str, Any]]:
        """(E, L) logits -> output dicts: label + score + scores, labels + scores, or value. With
        ``model.abstain_below`` P > 0, a label whose score is under P is not given: ``label`` None
        (single label) or left out of ``labels`` (multi-label); the scores are always there."""
        kind, names = model.labels.problem_type, model.labels.names
        chosen = self.decisions(logits, model)
        if kind == "regression":
            return [{"value": float(v)} for v in chosen]
        p = self.probabilities(logits, model)
        floor = model.abstain_below
        if kind == "multi_label":
            return [{"labels": [n for n, on, s in zip(names, row, q) if on and s >= floor],
                     "scores": dict(zip(names, map(float, q)))} for row, q in zip(chosen.tolist(), p)]
        return [{"label": names[c] if q[c] >= floor else None, "score": float(q[c]),
                 "scores": dict(zip(names, map(float, q)))} for c, q in zip(chosen.tolist(), p)]

    def calibrate(self, model, encoded, fitted_on: str, logits=None):
        """Fit the run's calibration on held-out ``encoded`` (targets included): a temperature, or per-label
        thresholds (multi-label); None for regression. ``logits``: ``model.logits(encoded)`` if already computed."""
        import torch

        from ..calibration import calibrate

        if model.labels.problem_type == "regression" or not encoded:
            return None
        logits = torch.stack(logits if logits is not None else model.logits(encoded))
        return calibrate(logits, [e.target for e in encoded], model.labels.problem_type, model.labels.names,
                         fitted_on)

    def evaluate(self, model, examples, encoded, logits=None):
        import numpy as np
        import torch

        from ..metrics import multilabel_metrics, regression_metrics, sequence_metrics

        logits = torch.stack(logits if logits is not None else model.logits(encoded))
        kind, names = model.labels.problem_type, model.labels.names
        chosen = self.decisions(logits, model)
        y_true = [e.target for e in encoded]
        if kind == "single_label":
            from ..calibration import expected_calibration_error, reliability

            metrics = sequence_metrics(y_true, chosen.tolist(), names)
            metrics["loss"] = float(torch.nn.functional.cross_entropy(logits, torch.tensor(y_true)))
            probs = self.probabilities(logits, model)
            metrics["ece"] = expected_calibration_error(probs, y_true)  # of the scores as served (temperature)
            metrics["reliability"] = dict(zip(("confidence", "accuracy", "count"), reliability(probs, y_true)))
        elif kind == "multi_label":
            metrics = multilabel_metrics(np.array(y_true, dtype=int), chosen.numpy(), names)
        else:
            metrics = regression_metrics(y_true, chosen.tolist())
        return metrics, self.decode(logits, model)

    def prediction_rows(self, model, examples, encoded):
        import torch

        logits = model.logits(encoded)
        decoded = self.decode(torch.stack(logits), model) if logits else []
        return [{"text": e.text, **({"pair": e.pair} if e.pair is not None else {}), **d}
                for e, d in zip(examples, decoded)]

    def same_decisions(self, reference, other, model):
        import torch

        a, b = self.decisions(torch.stack(reference), model), self.decisions(torch.stack(other).float(), model)
        if model.labels.problem_type == "regression":  # values within 1% + 0.01
            return bool(((a - b).abs() <= 0.01 + 0.01 * a.abs()).all())
        return torch.equal(a, b)

    def csv_fields(self, config, labels):
        pair = ["pair"] if config.data.text_pair_column else []
        return ["text", *pair, *{"single_label": ["label", "score", "scores"], "multi_label": ["labels", "scores"],
                                 "regression": ["value"]}[labels.problem_type]]

    def plots(self, folder, metrics, labels):
        from ..report import plot_confusion_matrix, plot_reliability

        if "confusion_matrix" in metrics:
            plot_confusion_matrix(metrics["confusion_matrix"], labels.names, folder / "confusion_matrix.png")
        if "reliability" in metrics:
            before = metrics.get("uncalibrated", {})
            curves = {"uncalibrated": (before["reliability"], before["ece"])} if "reliability" in before else {}
            label = f"temperature {metrics['calibration']['temperature']:.2f}" if "calibration" in metrics else "scores"
            curves[label] = (metrics["reliability"], metrics["ece"])
            plot_reliability(curves, folder / "calibration.png")


def _as_windows(windows: list[list[list[int]]], targets: list) -> list:
    """Each text's windows (or chunks) as one Encoded: a text that fits stays plain; else its windows end to
    end, with their lengths in ``windows`` (``batching._collate_windows`` gives each a row of its own)."""
    from ..data.examples import Encoded

    return [Encoded(w[0], t) if len(w) == 1 else Encoded([i for x in w for i in x], t, windows=[len(x) for x in w])
            for w, t in zip(windows, targets)]
