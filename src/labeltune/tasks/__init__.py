"""Tasks: everything that differs between labelling a text and tagging its words, in one object each.

    get_task("sequence") -> SequenceTask   one label per text (single-label, multi-label, regression)
    get_task("token")    -> TokenTask      an IOB2 tag per word (NER)
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import Task
from .sequence import SequenceTask
from .token import TokenTask

__all__ = ["Task", "SequenceTask", "TokenTask", "TASKS", "get_task"]

TASKS: dict[str, Task] = {t.name: t for t in (SequenceTask(), TokenTask())}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"task={name!r} is not valid; choose one of {', '.join(TASKS)}") from None
