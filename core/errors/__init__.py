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


class DatasetInfoChosen(DataError):
    """A LLaMA-Factory dataset_info.json given as the data file: the user has to choose one of its entries.
    `entries`: those whose file is next to it (usable here); `total`: all entries, hub-only ones included."""

    def __init__(self, path: str, entries: list[str], total: int):
        listed = ", ".join(entries[:20]) + (f" and {len(entries) - 20} more" if len(entries) > 20 else "")
        found = f"entries with a file here: {listed}" if entries else "no entry has its file next to it"
        super().__init__("this is a dataset_info.json: choose an entry", where=path,
                         hint=f"{found} ({total} entries in all); set data.dataset_info to this file and data.name "
                              "to the entry (--dataset-info FILE --name ENTRY)")
        self.entries = entries
        self.total = total


class ModelError(TunedeckError):
    kind = "model"


class RunError(TunedeckError):
    kind = "run"
