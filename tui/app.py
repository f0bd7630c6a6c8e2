"""The Textual app: holds the collaborators (runs root) and opens the runs screen."""

from __future__ import annotations

from pathlib import Path

from textual.app import App

from tunedeck.tui.screens.runs import RunsScreen


class TunedeckApp(App[None]):
    TITLE = "tunedeck"
    CSS_PATH = "app.tcss"
    BINDINGS = [("q", "quit", "Quit")]

    def __init__(self, runs_root: Path, preset: str | None = None, attach: str | None = None):
        super().__init__()
        self.runs_root = runs_root
        self.preset = preset
        self.attach_to = attach

    def on_mount(self) -> None:
        self.push_screen(RunsScreen(self.runs_root))
