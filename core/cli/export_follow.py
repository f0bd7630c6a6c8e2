"""Follow an export's events on a terminal: one line per step, progress on a TTY, and the report at the end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any, TextIO

from tunedeck.core.export.job import stop_export
from tunedeck.core.export.layout import ExportLayout
from tunedeck.core.stream.events import (
    Error,
    Event,
    ExportCheck,
    ExportFinished,
    ExportProgress,
    ExportStarted,
    ExportStep,
    Log,
)
from tunedeck.core.stream.tail import EventTail

POLL_S = 0.25
MARKS = {True: "ok  ", False: "FAIL", None: "skip"}


class ExportPrinter:
    def __init__(self, out: TextIO):
        self.out = out
        self.live = out.isatty()
        self.total = 0
        self.done = 0
        self.finished: ExportFinished | None = None
        self.failed_checks: list[ExportCheck] = []

    def handle(self, event: Event) -> None:
        if isinstance(event, ExportStarted):
            self.total = len(event.steps)
            self.print(f"exporting run {event.run_id} from {event.checkpoint}: {self.total} steps")
        elif isinstance(event, ExportStep):
            if event.state in ("done", "skipped", "failed"):
                self.done += event.state != "failed"
                took = f" ({event.seconds:.1f} s)" if event.seconds is not None and event.state == "done" else ""
                detail = f": {event.message}" if event.message else ""
                self.print(f"[{self.done}/{self.total}] {event.step} {event.state}{took}{detail}")
            elif self.live:
                self._draw(f"{event.step} ...")
        elif isinstance(event, ExportProgress) and self.live:
            self._draw(f"{event.step} {event.fraction * 100:.0f}% {event.message}")
        elif isinstance(event, ExportCheck):
            if event.passed is False:
                self.failed_checks.append(event)
            self.print(f"  check {MARKS[event.passed]} {event.name:9} {event.target:9} {event.message}")
        elif isinstance(event, Log) and event.level != "info":
            self.print(f"{event.level}: {event.message}")
        elif isinstance(event, Error):
            self.print(f"error ({event.kind}): {event.message}")
            for hint in event.hints:
                self.print(f"  - {hint}")
        elif isinstance(event, ExportFinished):
            self.finished = event

    def _draw(self, text: str) -> None:
        self.out.write("\r\x1b[K" + text[:100])
        self.out.flush()

    def print(self, text: str) -> None:
        if self.live:
            self.out.write("\r\x1b[K")
        self.out.write(text + "\n")
        self.out.flush()

    def summary(self) -> None:
        done = self.finished
        if done is None:
            return
        if done.report:
            try:
                report = json.loads(open(done.report, encoding="utf-8").read())
            except (OSError, json.JSONDecodeError):
                report = None
            if report:
                for line in report_table(report):
                    self.print(line)
        self.print(f"{done.status}: {done.message}")


def report_table(report: dict[str, Any]) -> list[str]:
    """The report's models side by side: size, perplexity, speed and the greedy answer."""
    lines = [f"\n{'model':8} {'size':>10} {'perplexity':>11} {'vs merged':>9} {'eval tok/s':>10} "
             f"{'gen tok/s':>9}  answer to {report.get('prompt', '')!r}"]
    for row in report.get("models", []):
        ratio = row.get("ratio_to_merged")
        lines.append(
            f"{row['name']:8} {row['size_bytes'] / 2**20:>8.1f}Mi {_num(row.get('perplexity'), 4):>11} "
            f"{f'{(ratio - 1) * 100:+.1f}%' if ratio else '':>9} {_num(row.get('tokens_per_s'), 1):>10} "
            f"{_num(row.get('gen_tokens_per_s'), 1):>9}  {row.get('answer', '')!r} [{row.get('ended_on')}]")
    for row in report.get("models", []):
        if row.get("modelfile"):
            lines.append(f"{row['name']}: {row['path']}\n{' ' * len(row['name'])}  {row['modelfile']}")
    return lines


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def follow_export(layout: ExportLayout, proc: subprocess.Popen | None = None, out: TextIO = sys.stdout) -> int:
    """Print an export's events until it ends; Ctrl-C stops it after the current step (twice: at once).

    Returns 0 when the export completed with no failed check, 1 otherwise.
    """
    printer = ExportPrinter(out)
    tail = EventTail(layout.events)
    interrupts = 0
    while printer.finished is None:
        try:
            for event in tail.poll():
                printer.handle(event)
            alive = proc.poll() is None if proc is not None else layout.running()
            if printer.finished is not None or not alive:
                for event in tail.poll():
                    printer.handle(event)
                break
            time.sleep(POLL_S)
        except KeyboardInterrupt:
            interrupts += 1
            stop_export(layout, now=interrupts > 1)
            printer.print("stopping after the current step (Ctrl-C again to stop at once)"
                          if interrupts == 1 else "stopping now")
    printer.summary()
    if printer.finished is None:
        printer.print(f"the export worker ended without finishing; see {layout.log}")
        return 1
    return 0 if printer.finished.status == "completed" and not printer.failed_checks else 1
