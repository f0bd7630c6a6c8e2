"""Errors a user can act on: each names what is wrong, where, and the fix."""

from __future__ import annotations


class TunedeckError(Exception):
    """An error caused by input the user controls; shown as one line, exit code 2."""

    kind = "error"
    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def one_line(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} ({self.hint})" if self.hint else text

    def __str__(self) -> str:
        return self.one_line()


class ConfigError(TunedeckError):
    kind = "config"


class DataError(TunedeckError):
    kind = "data"


class ModelError(TunedeckError):
    kind = "model"


class RunError(TunedeckError):
    kind = "run"
