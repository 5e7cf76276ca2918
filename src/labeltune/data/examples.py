"""The data types passed between readers, tasks and batching (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TextExample", "TokenExample", "Encoded"]


@dataclass
class TextExample:
    """Sequence task: one text (and optional second text) with its raw label."""

    text: str
    pair: str | None
    label: Any  # raw value from the source (str, int, float, list); None when unlabelled
    where: str  # "row 3 (line 4)" — for error messages


@dataclass
class TokenExample:
    """Token task: words with one IOB2 tag each (``tags`` None when unlabelled)."""

    tokens: list[str]
    tags: list[str] | None
    where: str
    offsets: list[tuple[int, int]] | None = None  # character spans in ``text`` (raw-text input)
    text: str | None = None
    document: Any = None  # consecutive sentences with the same value form a document (None: alone)


@dataclass
class Encoded:
    """One tokenised example: ids, its target(s) and, for the token task, which tokens form each unit."""

    input_ids: list[int]
    target: Any = None  # class id, multi-hot list, float, or a list per unit (token task)
    units: list[int] | None = None  # token task: unit index per token (-1 = none), local to the example
    extra: dict = field(default_factory=dict)
    windows: list[int] | None = None  # a long text read in windows: their lengths (input_ids holds them end to end)

    def __len__(self) -> int:
        return len(self.input_ids)
