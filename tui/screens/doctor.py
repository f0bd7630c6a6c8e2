"""The hardware screen: `tunedeck doctor --json` run in a subprocess, its checks with status colours and fixes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tunedeck.tui.styles import CHECK_STATUS_STYLE

TIMEOUT_S = 180


def doctor_command(runs_root: Path) -> list[str]:
    """The engine's doctor, run with this interpreter (the app itself never loads torch)."""
    return [sys.executable, "-m", "tunedeck.core.cli.main", "doctor", "--json", "--runs-dir", str(runs_root)]


def run_doctor_process(command: list[str]) -> dict[str, Any]:
    """The report from a doctor subprocess; raises RuntimeError with the reason when there is none."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"tunedeck doctor did not finish within {TIMEOUT_S} s") from None
    except OSError as exc:
        raise RuntimeError(f"could not start tunedeck doctor: {exc.strerror}") from None
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        tail = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise RuntimeError(f"tunedeck doctor failed: {tail}") from None


class DoctorScreen(Screen[None]):
    CSS_PATH = "doctor.tcss"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("r", "rerun", "Run again")]

    class Finished(Message):
        def __init__(self, report: dict[str, Any]):
            super().__init__()
            self.report = report

    class Failed(Message):
        def __init__(self, reason: str):
            super().__init__()
            self.reason = reason

    def __init__(self, runs_root: Path, command: list[str] | None = None):
        super().__init__()
        self.runs_root = runs_root
        self.command = command or doctor_command(runs_root)
        self.report: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Hardware: measuring this machine (a few seconds)...", id="doctor-summary")
        yield DataTable(id="doctor-checks", cursor_type="row", zebra_stripes=True)
        yield Static("", id="doctor-fix")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in ("status", "check", "what was found"):
            table.add_column(name, key=name)
        self.action_rerun()

    def action_rerun(self) -> None:
        self.query_one(DataTable).loading = True
        self.query_one("#doctor-summary", Static).update("Hardware: measuring this machine (a few seconds)...")
        self.measure()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def measure(self) -> None:
        try:
            self.post_message(self.Finished(run_doctor_process(self.command)))
        except RuntimeError as exc:
            self.post_message(self.Failed(str(exc)))

    def on_doctor_screen_finished(self, message: Finished) -> None:
        self.report = report = message.report
        table = self.query_one(DataTable)
        table.clear()
        for index, check in enumerate(report.get("checks", [])):
            status = check.get("status", "info")
            table.add_row(Text(status.upper(), style=CHECK_STATUS_STYLE.get(status, "")), check.get("name", ""),
                          check.get("detail", ""), key=str(index))
        table.loading = False
        gpus = report.get("gpus") or []
        where = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
        matmul = report.get("matmul", {})
        figures = ", ".join(f"{k} {v:g}" for k, v in (matmul.get("gflops") or {}).items() if v is not None)
        self.query_one("#doctor-summary", Static).update(
            f"Hardware: {report.get('host')} · {where} · torch {report.get('torch', {}).get('version')} · "
            f"matmul GFLOPS {figures} · precision auto -> {report.get('recommended_precision')} · "
            f"{report.get('seconds')} s")
        self._show_fix(0)
        problems = sum(c.get("status") in ("warn", "fail") for c in report.get("checks", []))
        if problems:
            self.notify(f"{problems} check(s) need attention: the fix is shown under the table",
                        severity="warning")

    def on_doctor_screen_failed(self, message: Failed) -> None:
        self.query_one(DataTable).loading = False
        self.query_one("#doctor-summary", Static).update("Hardware: the doctor could not run (press r to retry)")
        self.notify(message.reason, title="tunedeck doctor", severity="error", timeout=10)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self._show_fix(int(event.row_key.value))

    def _show_fix(self, index: int) -> None:
        checks = (self.report or {}).get("checks") or []
        if not 0 <= index < len(checks):
            return
        check = checks[index]
        text = Text()
        text.append(f"{check.get('name')}: ", style="bold")
        text.append(check.get("detail", ""))
        if check.get("fix"):
            text.append("\nfix: ", style=CHECK_STATUS_STYLE.get(check.get("status"), "bold"))
            text.append(check["fix"])
        self.query_one("#doctor-fix", Static).update(text)
