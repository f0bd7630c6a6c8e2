"""The hyperparameter form: every config field on top of a preset, each value checked as it is typed."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tunedeck.core.config import Config
from tunedeck.core.config_fields import (
    build_from_form,
    config_fields,
    field_error,
    field_value,
    preset_help,
    save_preset,
)
from tunedeck.core.errors import TunedeckError
from tunedeck.core.estimate.architecture import resolve_architecture
from tunedeck.core.estimate.devices import choose_device
from tunedeck.core.estimate.memory import estimate_peak_memory
from tunedeck.core.estimate.verdict import suggestions, verdict
from tunedeck.tui.screens.prompt import PromptScreen
from tunedeck.tui.screens.review import ReviewScreen
from tunedeck.tui.widgets.estimate_panel import EstimatePanel
from tunedeck.tui.widgets.field_row import FieldRow

ESTIMATE_DELAY_S = 0.3  # recompute the memory estimate once typing pauses this long


class ConfigFormScreen(Screen[None]):
    CSS_PATH = "config_form.tcss"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+r", "review", "Review"),
        Binding("ctrl+s", "save_preset", "Save as preset"),
    ]

    def __init__(self, preset: str | None, dataset: str | None = None, data: dict[str, Any] | None = None):
        """`dataset`: the data path; `data`: data fields chosen before the form (path or dataset_info + name,
        a cutoff picked on the inspection screen)."""
        super().__init__()
        self.preset = preset
        values = ({"path": dataset} if dataset else {}) | (data or {})
        self.start_values = {("data", key): value for key, value in values.items()}
        self.base = build_from_form(preset, self.start_values)
        self.advice = preset_help(preset)
        self._device = None  # the GPU the estimate is for, found once
        self._estimate_timer = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Hyperparameters · preset {self.preset or '(none)'} · ctrl+r reviews the resolved config",
                     id="form-title")
        yield EstimatePanel("Memory estimate: computing…", id="estimate")
        with VerticalScroll(id="form"):
            section = None
            for spec in config_fields():
                if spec.path[0] != section:
                    section = spec.path[0]
                    yield Static(section, classes="form-section")
                yield FieldRow(spec, field_value(self.base, spec), self.advice.get(spec.path))
        yield Footer()

    def on_mount(self) -> None:
        self.query(FieldRow).first().focus_input()
        self.refresh_estimate()

    def rows(self) -> list[FieldRow]:
        return list(self.query(FieldRow))

    def values(self) -> dict[tuple[str, ...], Any]:
        return {row.spec.path: row.value() for row in self.rows()}

    def on_field_row_changed(self, event: FieldRow.Changed) -> None:
        row = event.row
        row.show_error(field_error(self.preset, row.spec, row.value()))
        if self._estimate_timer is not None:
            self._estimate_timer.stop()
        self._estimate_timer = self.set_timer(ESTIMATE_DELAY_S, self.refresh_estimate)

    def refresh_estimate(self) -> None:
        """Estimate the form as it stands (off the event loop); the panel shows the result."""
        self.compute_estimate(self.values())

    @work(thread=True, exclusive=True, exit_on_error=False, group="estimate")
    def compute_estimate(self, values: dict[tuple[str, ...], Any]) -> None:
        try:
            config = build_from_form(self.preset, values)
            arch = resolve_architecture(config.model.name_or_path)
            if self._device is None:
                self._device = choose_device(preset=self.preset)
        except TunedeckError as exc:
            self.app.call_from_thread(self._show_estimate_problem, exc.one_line())
            return
        estimate = estimate_peak_memory(config, arch, self._device)
        said = verdict(estimate)
        fixes = suggestions(config, arch, self._device) if said != "fits" else []
        self.app.call_from_thread(self._show_estimate, estimate, said, fixes)

    def _show_estimate(self, estimate: Any, said: str, fixes: list[Any]) -> None:
        self.query_one(EstimatePanel).show(estimate, said, fixes, "data.cutoff_len as the longest sample")

    def _show_estimate_problem(self, message: str) -> None:
        self.query_one(EstimatePanel).show_problem(message)

    def checked_config(self) -> Config | None:
        """The form as a Config, or None after telling the user what is refused and where."""
        refused = [row for row in self.rows() if row.error]
        if refused:
            first = refused[0]
            self.notify(f"{len(refused)} value(s) refused; {first.spec.key}: {first.error}",
                        title="fix the form first", severity="error")
            first.focus_input()
            return None
        try:
            return build_from_form(self.preset, self.values())
        except TunedeckError as exc:
            self.notify(exc.message + (f" ({exc.hint})" if exc.hint else ""), title="fix the form first",
                        severity="error")
            key = exc.message.split(":", 1)[0]
            for row in self.rows():
                if row.spec.key == key:
                    row.show_error(exc.message.split(":", 1)[1].strip())
                    row.focus_input()
            return None

    def action_review(self) -> None:
        config = self.checked_config()
        if config is not None:
            self.app.push_screen(ReviewScreen(config, self.preset))

    def action_save_preset(self) -> None:
        config = self.checked_config()
        if config is None:
            return

        def named(name: str | None) -> None:
            if not name:
                return
            try:
                path = save_preset(name, config, based_on=self.preset)
            except (TunedeckError, OSError) as exc:
                self.notify(str(exc), title="preset not saved", severity="error")
                return
            self.notify(f"saved preset {name} to {path}")

        self.app.push_screen(PromptScreen("Save these values as a preset named:", "e.g. my-mi50"), named)

    def action_back(self) -> None:
        self.dismiss()
