"""Label names <-> ids, built from the training data and saved in the run directory (labels.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import DataError

__all__ = ["LabelMap"]


def _as_name(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _sort_key(name: str):
    try:  # numeric labels in numeric order ("2" before "10")
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _multi(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [_as_name(v) for v in value]
    return [v for v in (_as_name(x) for x in str(value).split(",")) if v]


@dataclass
class LabelMap:
    names: list[str]
    problem_type: str = "single_label"

    @classmethod
    def build(cls, values: Iterable[Any], problem_type: str = "single_label") -> "LabelMap":
        if problem_type == "regression":
            return cls(["score"], problem_type)
        seen: set[str] = set()
        for v in values:
            seen.update(_multi(v) if problem_type == "multi_label" else [_as_name(v)])
        if len(seen) < 2 and problem_type == "single_label":
            raise DataError("training data", None, f"only one distinct label ({', '.join(seen)}) found",
                            "a classifier needs examples of at least two labels")
        return cls(sorted(seen, key=_sort_key), problem_type)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def encode(self, value: Any, source: str = "data", where: str | None = None):
        """Raw label -> class id (single), multi-hot list (multi) or float (regression)."""
        if self.problem_type == "regression":
            try:
                return float(value)
            except (TypeError, ValueError):
                raise DataError(source, where, f"label {value!r} is not a number", "regression labels must be numbers") from None
        names = _multi(value) if self.problem_type == "multi_label" else [_as_name(value)]
        index = self.index
        unknown = [n for n in names if n not in index]
        if unknown:
            raise DataError(source, where, f"label {unknown[0]!r} never appears in the training data "
                            f"(known labels: {', '.join(self.names)})",
                            "fix the label, or add examples of it to the training file")
        if self.problem_type == "multi_label":
            hot = [0.0] * len(self.names)
            for n in names:
                hot[index[n]] = 1.0
            return hot
        return index[names[0]]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"labels": self.names, "problem_type": self.problem_type}, indent=2) + "\n",
                              encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "LabelMap":
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(list(d["labels"]), d.get("problem_type", "single_label"))
