"""The runs screen: every run under the runs root with its status and progress."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tunedeck.core.runs import list_runs

REFRESH_S = 2.0


class RunsScreen(Screen[None]):
    CSS_PATH = "runs.tcss"
    BINDINGS = [("r", "refresh", "Refresh")]

    def __init__(self, runs_root: Path):
        super().__init__()
        self.runs_root = runs_root

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Runs in {self.runs_root}", id="runs-title")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("run", "status", "progress", "loss", "best eval", "base model", "preset", "started")
        self.action_refresh()
        self.set_interval(REFRESH_S, self.action_refresh)

    def action_refresh(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for run in list_runs(self.runs_root):
            status = run.read_status()
            step, total = status.get("step", 0), status.get("total_steps")
            progress = f"{step}/{total}" if total else "-"
            loss = status.get("loss")
            best = status.get("best_eval_loss")
            started = status.get("started_at") or status.get("created_at")
            table.add_row(
                run.run_id, run.effective_status(), progress,
                f"{loss:.4f}" if loss is not None else "-", f"{best:.4f}" if best is not None else "-",
                str(status.get("base_model", "")), str(status.get("preset") or "-"),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else "-",
                key=run.run_id,
            )
