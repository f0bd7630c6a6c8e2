"""The app's shared look: the colours a state, a check or a finding is shown in on every screen."""

from __future__ import annotations

from rich.text import Text

RUN_STATUS_STYLE = {"running": "bold green", "starting": "green", "created": "cyan", "completed": "bold blue",
                    "failed": "bold red", "stopped": "yellow"}
CHECK_STATUS_STYLE = {"ok": "bold green", "warn": "bold yellow", "fail": "bold red", "info": "cyan"}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def run_status(state: str, marker: str = "") -> Text:
    """A run's state in its colour, e.g. '● running' in bold green."""
    return Text(f"{marker}{state}", style=RUN_STATUS_STYLE.get(state, ""))
