"""New run, first steps: the dataset (checked through core) and the preset, then on to the hyperparameter form."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, OptionList, Static
from textual.widgets.option_list import Option

from tunedeck.core.config import DataConfig
from tunedeck.core.config_files import load_config, preset_description, preset_names
from tunedeck.core.data.loading import load_data
from tunedeck.core.errors import DatasetInfoChosen, TunedeckError
from tunedeck.tui.inspector import CommandFactory, InspectRequest, worker_command
from tunedeck.tui.screens.config_form import ConfigFormScreen
from tunedeck.tui.screens.data import DataScreen


@dataclass(frozen=True)
class DatasetCheck:
    path: str  # as the config will hold it: absolute, or builtin:NAME (the dataset_info.json for an entry)
    ok: bool
    summary: str
    name: str | None = None  # the chosen entry when `path` is a dataset_info.json
    entries: tuple[str, ...] = ()  # a dataset_info.json's entries with a file, to choose from
    cutoff: int | None = None  # picked on accepting the inspection (keeps 95% / 99% of the samples whole)

    def data_values(self) -> dict[str, Any]:
        """The data fields this choice sets in the run's config."""
        values: dict[str, Any] = {"dataset_info": self.path, "name": self.name} if self.name else {"path": self.path}
        if self.cutoff:
            values["cutoff_len"] = self.cutoff
        return values


def config_data_path(text: str) -> str:
    text = text.strip()
    return text if text.startswith("builtin:") else str(Path(text).expanduser().resolve())


def check_dataset(text: str, name: str | None = None) -> DatasetCheck:
    """Read a data file (or entry `name` of a dataset_info.json) through core, no torch: the format, how many rows
    are usable, what was skipped. A dataset_info.json without an entry comes back with its entries to choose."""
    path = config_data_path(text)
    cfg = DataConfig(dataset_info=path, name=name) if name else DataConfig(path=path)
    try:
        data = load_data(cfg)
    except DatasetInfoChosen as exc:
        return DatasetCheck(path, False, exc.one_line(), entries=tuple(exc.entries))
    except TunedeckError as exc:
        return DatasetCheck(path, False, exc.one_line(), name)
    entry = f"entry '{name}': " if name else ""
    if data.layout:  # a corpus: its chunks are counted by the model's tokenizer in the inspection
        return DatasetCheck(path, True, f"{entry}{data.format} corpus ({data.layout})", name)
    skipped = f", {len(data.problems)} rows skipped (first: {data.problems[0].message})" if data.problems else ""
    return DatasetCheck(path, True, f"{entry}{data.format} data, {len(data.conversations)} usable rows{skipped}",
                        name)


class NewRunScreen(Screen[None]):
    CSS_PATH = "new_run.tcss"
    BINDINGS = [Binding("escape", "back", "Back"), Binding("ctrl+n", "next", "Next: hyperparameters")]

    def __init__(self, preset: str | None = None, inspect_command: CommandFactory = worker_command):
        super().__init__()
        self.preset = preset
        self.inspect_command = inspect_command  # the inspection worker's command line (tests replay one)
        self.dataset: DatasetCheck | None = None
        self._next_after_check = False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="new-run"):
            yield Static("1 · Dataset", classes="step-title")
            yield Input(placeholder="path to a JSON / JSONL / CSV file, or builtin:NAME; empty keeps the preset's "
                        "dataset", id="dataset")
            yield Static("Enter checks the file.", id="dataset-status", classes="muted")
            yield OptionList(id="entries", classes="hidden")
            yield Static("2 · Preset", classes="step-title")
            yield OptionList(*[Option(f"{name:10} {preset_description(name)}", id=name) for name in preset_names()],
                             id="presets")
            yield Static("Enter on a preset opens its hyperparameter form.", classes="muted")
        yield Footer()

    def on_mount(self) -> None:
        presets = self.query_one("#presets", OptionList)
        names = preset_names()
        if self.preset in names:
            presets.highlighted = names.index(self.preset)
        elif names:
            presets.highlighted = 0
        self.query_one("#dataset", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.inspect_dataset(event.value)

    def inspect_dataset(self, text: str) -> None:
        """The dataset step's one entry point: a quick read through core (format, usable rows), then the
        inspection screen, measured with the highlighted preset's tokenizer, template and cutoff."""
        if not text.strip():
            self.dataset = None
            self.query_one("#dataset-status", Static).update("the preset's own dataset will be used")
            self.query_one("#presets", OptionList).focus()
            return
        self.query_one("#dataset-status", Static).update("checking…")
        self.run_dataset_check(text)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def run_dataset_check(self, text: str, name: str | None = None) -> None:
        self.app.call_from_thread(self._dataset_checked, text, check_dataset(text, name))

    def _dataset_checked(self, text: str, result: DatasetCheck) -> None:
        if text != self.query_one("#dataset", Input).value:
            return  # edited since
        self.dataset = result
        status = self.query_one("#dataset-status", Static)
        status.update(("✓ " if result.ok else "✗ ") + result.summary)
        status.set_class(not result.ok, "error-text")
        entries = self.query_one("#entries", OptionList)
        entries.set_class(not result.entries, "hidden")
        if result.entries:  # a dataset_info.json: choose one of its entries
            self._next_after_check = False
            status.update(f"this is a dataset_info.json: choose an entry ({len(result.entries)} have their file "
                          "here; Enter on one inspects it)")
            status.set_class(False, "error-text")
            entries.clear_options()
            entries.add_options([Option(entry, id=entry) for entry in result.entries])
            entries.highlighted = 0
            entries.focus()
            return
        if result.ok and self._next_after_check:
            self._next_after_check = False
            self.action_next()
        elif result.ok:
            self.open_inspection(result)
        else:
            self._next_after_check = False
            self.notify(result.summary, title="dataset refused", severity="error")

    def inspect_request(self, path: str) -> InspectRequest:
        """What the inspection measures with: the highlighted preset's model, template, cutoff and corpus settings."""
        presets = self.query_one("#presets", OptionList)
        preset = presets.get_option_at_index(presets.highlighted).id if presets.highlighted is not None else None
        try:
            config = load_config(preset=preset)
        except TunedeckError:
            config = load_config()
        data = config.data
        return InspectRequest(path, format=data.format, model=config.model.name_or_path,
                              template=config.model.template, cutoff=data.cutoff_len, corpus_mode=data.corpus_mode,
                              chunk_tokens=(data.chunk_tokens[0], data.chunk_tokens[1]),
                              system_prompt=data.system_prompt, placeholders=tuple(data.placeholders.items()))

    def open_inspection(self, check: DatasetCheck) -> None:
        request = self.inspect_request(check.path)
        if check.name:
            request = replace(request, dataset_info=check.path, name=check.name, format="auto")
        screen = DataScreen(request, self.inspect_command)
        self.app.push_screen(screen, lambda accepted: self._inspected(check, bool(accepted), screen.chosen_cutoff))

    def _inspected(self, check: DatasetCheck, accepted: bool, cutoff: int | None = None) -> None:
        status = self.query_one("#dataset-status", Static)
        if accepted:
            self.dataset = replace(check, cutoff=cutoff)
            chosen = f" · data.cutoff_len {cutoff}" if cutoff else ""
            status.update(f"✓ {check.summary} · inspected{chosen}")
            self.query_one("#presets", OptionList).focus()
        else:
            self.dataset = None
            status.update(f"{check.summary} · not accepted: Enter inspects it again")
            self.query_one("#dataset", Input).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "entries":
            self.query_one("#dataset-status", Static).update(f"checking entry '{event.option.id}'…")
            self.run_dataset_check(self.query_one("#dataset", Input).value, event.option.id)
            return
        self.action_next()

    def action_next(self) -> None:
        text = self.query_one("#dataset", Input).value
        if self.dataset is not None and self.dataset.entries:
            self.notify("this is a dataset_info.json: choose an entry first", severity="warning")
            return
        if text.strip() and (self.dataset is None or self.dataset.path != config_data_path(text)):
            self._next_after_check = True
            self.inspect_dataset(text)
            return
        if self.dataset is not None and not self.dataset.ok:
            self.notify(self.dataset.summary, title="dataset refused", severity="error")
            return
        presets = self.query_one("#presets", OptionList)
        if presets.highlighted is None:
            self.notify("choose a preset", severity="warning")
            return
        preset = presets.get_option_at_index(presets.highlighted).id
        self.app.push_screen(ConfigFormScreen(preset, data=self.dataset.data_values() if self.dataset else None))

    def action_back(self) -> None:
        self.dismiss()
