"""The export wizard: pick checkpoint, merge dtype, quant types and system prompt; follow the steps; show the report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    ProgressBar,
    Select,
    SelectionList,
    Static,
)

from tunedeck.core.export.job import start_export
from tunedeck.core.export.layout import ExportLayout
from tunedeck.core.export.options import export_options
from tunedeck.core.export.quant_types import QUANT_TYPES
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import (
    Error,
    ExportCheck,
    ExportFinished,
    ExportProgress,
    ExportStarted,
    ExportStep,
)
from tunedeck.core.stream.tail import EventTail

POLL_S = 0.3
CHECK_MARKS = {True: "ok", False: "FAILED", None: "skipped"}


@dataclass(frozen=True)
class ExportChoices:
    checkpoint: str
    merge_dtype: str
    quantizations: list[str]
    system_prompt: str | None


class ExportLauncher(Protocol):
    """Starts and stops an export; its worker writes <run>/export/events.jsonl."""

    def start(self, run_dir: Path, choices: ExportChoices) -> None: ...

    def stop(self, run_dir: Path) -> None: ...


class WorkerExportLauncher:
    """The real launcher: a detached `python -m tunedeck.core.worker export RUN_DIR`."""

    def start(self, run_dir: Path, choices: ExportChoices) -> None:
        run = RunDir(run_dir)
        options = export_options(run, checkpoint=choices.checkpoint, merge_dtype=choices.merge_dtype,
                                 quant=",".join(choices.quantizations), system=choices.system_prompt)
        start_export(run, options)

    def stop(self, run_dir: Path) -> None:
        ExportLayout.for_run(RunDir(run_dir)).stop()


class ExportScreen(Screen[None]):
    CSS_PATH = "export.tcss"
    BINDINGS = [("ctrl+r", "start", "Run export"), ("ctrl+t", "stop", "Stop export"), ("escape", "back", "Back")]

    def __init__(self, run_dir: Path, launcher: ExportLauncher, defaults: dict[str, Any] | None = None):
        super().__init__()
        self.run_dir = run_dir
        self.launcher = launcher
        self.defaults = defaults or {}
        self.tail: EventTail | None = None
        self.finished: ExportFinished | None = None

    def compose(self) -> ComposeResult:
        quants = self.defaults.get("quantizations", ["Q4_K_M"])
        yield Header()
        yield Static(f"Export {self.run_dir.name}", id="export-title")
        with Horizontal(id="export-body"):
            with VerticalScroll(id="export-form"):
                yield Label("Checkpoint")
                yield Select([(c, c) for c in self._checkpoints()], value="best", allow_blank=False,
                             id="checkpoint")
                yield Label("Merge dtype")
                yield Select([(d, d) for d in ("auto", "fp16", "bf16", "fp32")], value="auto", allow_blank=False,
                             id="merge-dtype")
                yield Label("Quantization types")
                yield SelectionList[str](*[(f"{name:7} {what}", name, name in quants)
                                           for name, (_, what) in QUANT_TYPES.items()], id="quants")
                yield Label("System prompt (Modelfile SYSTEM)")
                yield Input(value=self.defaults.get("system_prompt") or "", placeholder="none", id="system")
                yield Button("Export", variant="primary", id="start")
            with Vertical(id="export-progress"):
                yield ProgressBar(total=1, id="bar", show_eta=False)
                yield DataTable(id="steps", cursor_type="none")
                yield DataTable(id="checks", cursor_type="none")
                yield DataTable(id="report", cursor_type="none")
                yield Static("", id="export-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#steps", DataTable).add_columns("step", "state", "seconds", "detail")
        self.query_one("#checks", DataTable).add_columns("check", "target", "result", "detail")
        self.query_one("#report", DataTable).add_columns("model", "size MiB", "perplexity", "vs merged",
                                                         "eval tok/s", "gen tok/s", "answer")
        self.set_interval(POLL_S, self.poll_events)

    def _checkpoints(self) -> list[str]:
        steps = sorted((int(p.name.split("-")[1]) for p in (self.run_dir / "checkpoints").glob("checkpoint-*")
                        if p.name.split("-")[1].isdigit()), reverse=True)
        return ["best", "last", *map(str, steps)]

    def choices(self) -> ExportChoices:
        system = self.query_one("#system", Input).value
        return ExportChoices(
            checkpoint=str(self.query_one("#checkpoint", Select).value),
            merge_dtype=str(self.query_one("#merge-dtype", Select).value),
            quantizations=list(self.query_one("#quants", SelectionList).selected),
            system_prompt=system or None,
        )

    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        choices = self.choices()
        if not choices.quantizations:
            self.notify("pick at least one quantization type", severity="warning")
            return
        try:
            self.launcher.start(self.run_dir, choices)
        except Exception as exc:  # noqa: BLE001 - any refusal is shown, never a traceback
            self.notify(str(exc), title="export not started", severity="error", timeout=10)
            return
        for table in ("#steps", "#checks", "#report"):
            self.query_one(table, DataTable).clear()
        self.finished = None
        self.tail = EventTail(ExportLayout.for_run(RunDir(self.run_dir)).events_path)
        self.query_one("#export-status", Static).update("export started")

    def action_stop(self) -> None:
        if self.tail is not None and self.finished is None:
            self.launcher.stop(self.run_dir)
            self.notify("stopping after the current step")

    def action_back(self) -> None:
        self.app.pop_screen()

    def poll_events(self) -> None:
        if self.tail is None:
            return
        for event in self.tail.poll():
            self.show(event)

    def show(self, event: Any) -> None:
        bar = self.query_one("#bar", ProgressBar)
        steps = self.query_one("#steps", DataTable)
        if isinstance(event, ExportStarted):
            bar.update(total=len(event.steps), progress=0)
        elif isinstance(event, ExportStep):
            row = [event.step, event.state, f"{event.seconds:.1f}" if event.seconds is not None else "",
                   event.message[:80]]
            if event.step in steps.rows:
                for column, value in zip(steps.columns, row, strict=False):
                    steps.update_cell(event.step, column, value)
            else:
                steps.add_row(*row, key=event.step)
            if event.state in ("done", "skipped"):
                bar.advance(1)
        elif isinstance(event, ExportProgress):
            self.query_one("#export-status", Static).update(
                f"{event.step}: {event.fraction * 100:.0f}% {event.message}")
        elif isinstance(event, ExportCheck):
            self.query_one("#checks", DataTable).add_row(event.name, event.target, CHECK_MARKS[event.passed],
                                                         event.message[:90])
        elif isinstance(event, Error):
            self.notify(event.message + ("\n" + "\n".join(event.hints) if event.hints else ""),
                        title=f"export failed ({event.kind})", severity="error", timeout=15)
        elif isinstance(event, ExportFinished):
            self.finished = event
            self.query_one("#export-status", Static).update(f"{event.status}: {event.message}")
            if event.report:
                self.show_report(Path(event.report))

    def show_report(self, path: Path) -> None:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            self.notify(f"cannot read the report: {exc}", severity="error")
            return
        table = self.query_one("#report", DataTable)
        for row in report.get("models", []):
            ratio = row.get("ratio_to_merged")
            table.add_row(row["name"], f"{row['size_bytes'] / 2**20:.1f}", _num(row.get("perplexity"), 4),
                          f"{(ratio - 1) * 100:+.1f}%" if ratio else "", _num(row.get("tokens_per_s"), 1),
                          _num(row.get("gen_tokens_per_s"), 1), (row.get("answer") or "")[:60])


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
