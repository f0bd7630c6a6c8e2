"""The evaluation screen: starts a batch evaluation of a run, follows its progress, shows fine-tuned vs base."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static

from tunedeck.core.evaluate.job import start_eval
from tunedeck.core.evaluate.layout import EvalLayout, EvalRequest
from tunedeck.core.evaluate.table import HEADER, metric_rows, provenance, task_line, verdict
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import Error, EvalFinished, EvalProgress, EvalStarted, Log
from tunedeck.core.stream.tail import EventTail

POLL_S = 0.3
SHOWN_PREDICTIONS = 200
CELL = 34


class EvalLauncher(Protocol):
    """Starts and stops an evaluation; its worker writes <run>/eval/events.jsonl, then metrics.json."""

    def start(self, run_dir: Path, request: EvalRequest) -> None: ...

    def stop(self, run_dir: Path) -> None: ...


class WorkerEvalLauncher:
    """The real launcher: a detached `python -m tunedeck.core.worker eval RUN_DIR`."""

    def start(self, run_dir: Path, request: EvalRequest) -> None:
        start_eval(RunDir(run_dir), request)

    def stop(self, run_dir: Path) -> None:
        EvalLayout(run_dir / "eval").stop()


class EvalScreen(Screen[None]):
    CSS_PATH = "eval.tcss"
    BINDINGS = [
        Binding("r", "start", "Run again"),
        Binding("b", "toggle_base", "Base on/off"),
        Binding("s", "stop", "Stop"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_dir: Path, launcher: EvalLauncher, compare_base: bool = True):
        super().__init__()
        self.run_dir = run_dir
        self.launcher = launcher
        self.compare_base = compare_base
        self.eval_layout = EvalLayout(run_dir / "eval")
        self.tail: EventTail | None = None
        self.phases: list[str] = []
        self.rows = 0
        self.finished: EvalFinished | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Evaluate {self.run_dir.name}", id="eval-title")
        yield ProgressBar(total=None, id="eval-bar", show_eta=False)
        yield Static("", id="eval-status")
        yield Static("", id="eval-task")
        yield DataTable(id="eval-metrics", cursor_type="none")
        yield Static("", id="eval-verdict")
        yield Static("", id="eval-provenance")
        yield DataTable(id="eval-predictions", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#eval-metrics", DataTable).add_columns(*HEADER)
        self.query_one("#eval-predictions", DataTable).add_columns("prompt", "reference", "fine-tuned", "base")
        self.set_interval(POLL_S, self.poll_events)
        self.action_start()

    def status(self, text: str) -> None:
        self.query_one("#eval-status", Static).update(text)

    def action_start(self) -> None:
        if self.tail is not None and self.finished is None:
            self.notify("an evaluation is already running", severity="warning")
            return
        self.finished = None
        for table in ("#eval-metrics", "#eval-predictions"):
            self.query_one(table, DataTable).clear()
        for text in ("#eval-task", "#eval-verdict", "#eval-provenance"):
            self.query_one(text, Static).update("")
        self.query_one("#eval-bar", ProgressBar).update(total=None, progress=0)
        if self.eval_layout.running():  # started earlier (from here or `tunedeck eval`): follow it
            self.status("an evaluation of this run is running: following it")
            self.follow()
            return
        base = "with the base model side by side" if self.compare_base else "fine-tuned only"
        self.status(f"starting the evaluation ({base})")
        self.launch(EvalRequest(compare_base=self.compare_base))

    @work(thread=True, exclusive=True, exit_on_error=False)
    def launch(self, request: EvalRequest) -> None:
        """Start the worker off the UI thread: it reads the run's data to refuse what cannot be evaluated."""
        try:
            self.launcher.start(self.run_dir, request)
        except Exception as exc:  # noqa: BLE001 - any refusal is shown, never a traceback
            message = exc.one_line() if hasattr(exc, "one_line") else str(exc)
            self.app.call_from_thread(self.refused, message)
            return
        self.app.call_from_thread(self.follow)

    def refused(self, message: str) -> None:
        self.notify(message, title="evaluation not started", severity="error", timeout=10)
        self.status(f"not started: {message}")
        self.tail = None

    def follow(self) -> None:
        self.tail = EventTail(self.eval_layout.events_path)
        self.poll_events()

    def action_toggle_base(self) -> None:
        self.compare_base = not self.compare_base
        self.notify("the next run compares with the base model" if self.compare_base
                    else "the next run scores the fine-tuned model only")

    def action_stop(self) -> None:
        if self.tail is not None and self.finished is None:
            self.launcher.stop(self.run_dir)
            self.notify("stopping after the current batch")

    def action_back(self) -> None:
        self.app.pop_screen()

    def poll_events(self) -> None:
        if self.tail is None:
            return
        for event in self.tail.poll():
            self.show(event)

    def show(self, event: Any) -> None:
        bar = self.query_one("#eval-bar", ProgressBar)
        if isinstance(event, EvalStarted):
            self.phases, self.rows = event.phases, event.rows
            bar.update(total=max(len(event.phases) * event.rows, 1), progress=0)
            self.status(f"{event.rows} held-out rows from {event.source}")
        elif isinstance(event, EvalProgress) and event.phase in self.phases:
            bar.update(progress=self.phases.index(event.phase) * self.rows + event.done)
            step = f"{self.phases.index(event.phase) + 1}/{len(self.phases)}"
            self.status(f"[{step}] {event.phase.replace('_', ' ')}: {event.done}/{event.total} rows")
        elif isinstance(event, Log) and event.level != "info":
            self.notify(event.message, severity="warning")
        elif isinstance(event, Error):
            self.notify(event.message + ("\n" + "\n".join(event.hints) if event.hints else ""),
                        title=f"evaluation failed ({event.kind})", severity="error", timeout=15)
        elif isinstance(event, EvalFinished):
            self.finished = event
            self.status(f"{event.status}: {event.message}")
            if event.status == "completed":
                bar.update(progress=bar.total or 0)
                self.show_results()

    def show_results(self) -> None:
        try:
            metrics = json.loads(self.eval_layout.metrics.read_text(encoding="utf-8"))
            lines = self.eval_layout.predictions_jsonl.read_text(encoding="utf-8").splitlines()
        except (OSError, json.JSONDecodeError) as exc:
            self.notify(f"cannot read the results: {exc}", severity="error")
            return
        table = self.query_one("#eval-metrics", DataTable)
        for row in metric_rows(metrics):
            table.add_row(*row)
        self.query_one("#eval-task", Static).update(task_line(metrics) or "")
        self.query_one("#eval-verdict", Static).update(verdict(metrics) or "")
        self.query_one("#eval-provenance", Static).update("\n".join(provenance(metrics)))
        predictions = self.query_one("#eval-predictions", DataTable)
        for line in lines[:SHOWN_PREDICTIONS]:
            record = json.loads(line)
            predictions.add_row(*(_cell(record.get(k)) for k in ("prompt", "reference", "prediction",
                                                                 "base_prediction")))


def _cell(text: str | None) -> str:
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= CELL else flat[: CELL - 1] + "…"
