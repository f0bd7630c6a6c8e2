"""The runs screen: every run under the runs root with its status and progress; attach, start, stop, delete.

What opens another screen for a run is posted up as a message (`RunsScreen.OpenRun`, ...); the app reacts.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tunedeck.core.errors import TunedeckError
from tunedeck.core.jobs.runs import RunDir, delete_run, find_run, list_runs
from tunedeck.tui.screens.confirm import ConfirmScreen
from tunedeck.tui.screens.doctor import DoctorScreen
from tunedeck.tui.styles import run_status

REFRESH_S = 2.0
COLUMNS = ("run", "status", "progress", "loss", "best eval", "base model", "preset", "started")


def run_row(run: RunDir) -> list[str | Text]:
    """The table cells for one run, from its status file."""
    status = run.read_status()
    state = run.effective_status()
    step, total = status.get("step", 0), status.get("total_steps")
    progress = f"{step}/{total}" if total else "-"
    loss, best = status.get("loss"), status.get("best_eval_loss")
    started = status.get("started_at") or status.get("created_at")
    return [
        run.run_id, run_status(state), progress,
        f"{loss:.4f}" if loss is not None else "-", f"{best:.4f}" if best is not None else "-",
        str(status.get("base_model", "")), str(status.get("preset") or "-"),
        time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else "-",
    ]


class RunMessage(Message):
    """Something asked for one run, by id."""

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id


class RunsScreen(Screen[None]):
    class OpenRun(RunMessage):
        """Attach: the run's live view."""

    class OpenExport(RunMessage):
        """The export wizard for the run."""

    class OpenEval(RunMessage):
        """The evaluation of the run."""

    class OpenChat(RunMessage):
        """The chat pane on the run's model."""

    class ResumeRun(RunMessage):
        """Continue the stopped or failed run from its newest checkpoint."""

    class NewRun(Message):
        """Start the new-run steps: dataset, preset, hyperparameters, review."""

    CSS_PATH = "runs.tcss"
    BINDINGS = [
        Binding("enter", "attach", "Attach", priority=True),
        Binding("n", "new_run", "New run"),
        Binding("s", "stop", "Stop"),
        Binding("u", "resume", "Resume"),
        Binding("e", "export", "Export"),
        Binding("c", "chat", "Chat"),
        Binding("v", "evaluate", "Evaluate"),
        Binding("d", "delete", "Delete"),
        Binding("r", "refresh", "Refresh"),
        Binding("h", "hardware", "Hardware"),
    ]

    def __init__(self, runs_root: Path):
        super().__init__()
        self.runs_root = runs_root

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Runs in {self.runs_root}", id="runs-title")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-empty")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        self.action_refresh()
        self.set_interval(REFRESH_S, self.action_refresh)

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        """Update rows in place, so the cursor stays on the same run."""
        table = self.query_one(DataTable)
        runs = {run.run_id: run for run in list_runs(self.runs_root)}
        for key in [k.value for k in table.rows if k.value not in runs]:
            table.remove_row(key)
        for run_id, run in runs.items():
            cells = run_row(run)
            if run_id in {k.value for k in table.rows}:
                for column, value in zip(COLUMNS, cells, strict=True):
                    table.update_cell(run_id, column, value)
            else:
                table.add_row(*cells, key=run_id)
        empty = self.query_one("#runs-empty", Static)
        empty.update("" if runs else "No runs yet: press n to start one (or run `tunedeck --preset cpu-demo "
                     "--headless`).")
        empty.display = not runs

    def selected_run(self) -> RunDir | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            self.notify("no run selected", severity="warning")
            return None
        run_id = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        try:
            return find_run(self.runs_root, str(run_id))
        except TunedeckError as exc:
            self.notify(exc.one_line(), severity="error")
            return None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.post_message(self.OpenRun(str(event.row_key.value)))

    def post_for_selected(self, message: type[RunMessage]) -> None:
        run = self.selected_run()
        if run is not None:
            self.post_message(message(run.run_id))

    def action_attach(self) -> None:
        self.post_for_selected(self.OpenRun)

    def action_resume(self) -> None:
        self.post_for_selected(self.ResumeRun)

    def action_export(self) -> None:
        self.post_for_selected(self.OpenExport)

    def action_chat(self) -> None:
        self.post_for_selected(self.OpenChat)

    def action_evaluate(self) -> None:
        self.post_for_selected(self.OpenEval)

    def action_hardware(self) -> None:
        self.app.push_screen(DoctorScreen(self.runs_root))

    def action_new_run(self) -> None:
        self.post_message(self.NewRun())

    def action_stop(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        if run.effective_status() not in ("starting", "running"):
            self.notify(f"{run.run_id} is not running ({run.effective_status()})", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                asked = run.stop()
                self.notify(f"asked {run.run_id} to stop after its current step" if asked
                            else f"{run.run_id} had already stopped")
                self.action_refresh()

        self.app.push_screen(ConfirmScreen(f"Stop run {run.run_id}?\nIt saves a checkpoint at the next step "
                                           "boundary.", yes_label="Stop"), answered)

    def action_delete(self) -> None:
        run = self.selected_run()
        if run is None:
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                delete_run(run)
            except (TunedeckError, OSError) as exc:
                message = exc.one_line() if isinstance(exc, TunedeckError) else str(exc)
                self.notify(message, title="not deleted", severity="error")
                return
            self.notify(f"deleted {run.run_id}")
            self.action_refresh()

        self.app.push_screen(ConfirmScreen(f"Delete run {run.run_id} and everything in it (checkpoints, "
                                           "adapter, logs)?", yes_label="Delete"), answered)
