"""Review the fully resolved config as YAML, then launch the run."""

from __future__ import annotations

from rich.syntax import Syntax
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tunedeck.core.config import Config
from tunedeck.core.config_files import dump_config
from tunedeck.core.data.loading import describe_source
from tunedeck.core.errors import TunedeckError


class ReviewScreen(Screen[None]):
    CSS_PATH = "review.tcss"
    BINDINGS = [Binding("escape", "back", "Back"), Binding("l", "launch", "Launch")]

    def __init__(self, config: Config, preset: str | None):
        super().__init__()
        self.config = config
        self.preset = preset
        self.yaml = dump_config(config)
        self.launching = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"The resolved config (preset {self.preset or '(none)'} + the form). l launches it.",
                     id="review-title")
        yield Static(describe_source(self.config.data), id="review-data")
        with VerticalScroll(id="review"):
            yield Static(Syntax(self.yaml, "yaml", line_numbers=True, theme="ansi_dark"), id="review-yaml")
        yield Footer()

    def action_launch(self) -> None:
        if self.launching:
            return
        self.launching = True
        self.notify("starting the run…")
        self.launch()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def launch(self) -> None:
        try:
            run = self.app.launcher.launch(self.config, self.preset or "custom", self.preset)
        except TunedeckError as exc:
            self.app.call_from_thread(self._failed, exc.one_line())
            return
        except OSError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self.app.open_run, run.run_id)

    def _failed(self, message: str) -> None:
        self.launching = False
        self.notify(message, title="run not started", severity="error")

    def action_back(self) -> None:
        self.dismiss()
