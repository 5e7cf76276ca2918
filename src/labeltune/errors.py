"""Errors a user can fix. The CLI prints their message (no traceback) and exits with status 2."""

__all__ = ["LabeltuneError", "DataError", "ConfigError"]


class LabeltuneError(Exception):
    """A mistake in input or settings; the message says what is wrong and how to fix it."""


class DataError(LabeltuneError, ValueError):
    """Bad data: names the file, the row or line, what is wrong and the fix."""

    def __init__(self, path, where: str | None, problem: str, fix: str):
        loc = f"{path}" + (f", {where}" if where else "")
        super().__init__(f"{loc}: {problem}. {fix}")
        self.path, self.where, self.problem, self.fix = path, where, problem, fix


class ConfigError(LabeltuneError, ValueError):
    """An invalid setting (dataclass validation, unknown model, unsupported family)."""
