"""Review the fully resolved config as YAML, then ask the app to launch the run."""

from __future__ import annotations

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tunedeck.core.config import Config
from tunedeck.core.config_files import dump_config
from tunedeck.core.data.loading import describe_source


class ReviewScreen(Screen[None]):
    CSS_PATH = "review.tcss"
    BINDINGS = [Binding("escape", "back", "Back"), Binding("l", "launch", "Launch")]

    class LaunchRun(Message):
        """Create a run of this config and start its training."""

        def __init__(self, config: Config, label: str, preset: str | None):
            super().__init__()
            self.config = config
            self.label = label
            self.preset = preset

    def __init__(self, config: Config, preset: str | None):
        super().__init__()
        self.config = config
        self.preset = preset
        self.yaml = dump_config(config)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"The resolved config (preset {self.preset or '(none)'} + the form). l launches it.",
                     id="review-title")
        yield Static(describe_source(self.config.data), id="review-data")
        with VerticalScroll(id="review"):
            yield Static(Syntax(self.yaml, "yaml", line_numbers=True, theme="ansi_dark"), id="review-yaml")
        yield Footer()

    def action_launch(self) -> None:
        self.post_message(self.LaunchRun(self.config, self.preset or "custom", self.preset))

    def action_back(self) -> None:
        self.dismiss()
