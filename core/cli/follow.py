"""The command line's follow loop: a job's events handed to a printer until the job ends; Ctrl-C stops the job."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, TextIO

from tunedeck.core.cli.printers import ExportPrinter, TrainingPrinter
from tunedeck.core.export.layout import ExportLayout
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import Event
from tunedeck.core.stream.tail import EventTail

POLL_S = 0.25
EXIT_GRACE_S = 5.0  # a job that wrote its finished event gets this long to exit before the loop leaves it
ACTIVE = ("starting", "running")


class Printer(Protocol):
    """What the loop needs of a printer: events in, lines out, the job's finished event once it came."""

    @property
    def finished(self) -> Event | None: ...

    def handle(self, event: Event) -> None: ...

    def print(self, text: str) -> None: ...

    def summary(self) -> None: ...


def follow(events: EventTail, printer: Printer, alive: Callable[[], bool], stop: Callable[[bool], object],
           poll_s: float = POLL_S, grace_s: float = EXIT_GRACE_S) -> None:
    """Hand each new event to the printer until the worker is gone, or the job's finished event arrived while
    following (and the worker had grace_s to exit); what was written last is read before leaving. A finished
    event already in the file when following starts may be followed by a resumed segment, so only the worker's
    end stops that. Ctrl-C asks the job to stop after its current step; again, to stop at once (the worker's
    second stop request); a third time kills it. Ends with the printer's summary."""
    pending: deque[Event] = deque()
    interrupts = 0
    finished_at: float | None = None  # when a finished event arrived while following
    first, stale = True, None  # stale: a finished event already in the file when following began
    while True:
        try:
            _hand_over(events, printer, pending)
            if first:
                first, stale = False, printer.finished
            if printer.finished is None or printer.finished is stale:
                finished_at = None
            elif finished_at is None:
                finished_at = time.monotonic()
            if not alive():  # finished or dead: read what it wrote last, then stop
                _hand_over(events, printer, pending)
                break
            if finished_at is not None and time.monotonic() - finished_at >= grace_s:
                break
            time.sleep(poll_s)
        except KeyboardInterrupt:
            interrupts += 1
            stop(interrupts > 2)
            printer.print("stopping after the current step (Ctrl-C again to stop at once)"
                          if interrupts == 1 else "stopping now")
    printer.summary()


def _hand_over(events: EventTail, printer: Printer, pending: deque[Event]) -> None:
    """Every new event to the printer; an interrupt leaves the ones not yet printed in `pending`."""
    pending.extend(events.poll())
    while pending:
        printer.handle(pending.popleft())


def _alive(proc: subprocess.Popen | None, status: Callable[[], bool]) -> Callable[[], bool]:
    """Whether the worker still runs: the process we started, else what its status file says."""
    return (lambda: proc.poll() is None) if proc is not None else status


def follow_run(run: RunDir, proc: subprocess.Popen | None = None, out: TextIO = sys.stdout,
               skip_history: bool = False) -> int:
    """Print a run's events until it finishes. Ctrl-C asks the worker to stop (twice: at once).

    skip_history follows only new events (a resumed run). Returns 0 when the run completed, 1 otherwise.
    """
    printer = TrainingPrinter(out)
    pid = proc.pid if proc is not None else None
    follow(EventTail(run.events_path, back=0 if skip_history else None), printer,
           alive=_alive(proc, lambda: run.effective_status() in ACTIVE),
           stop=lambda now: run.stop(now=now, pid=pid))
    if printer.finished is None:
        code = proc.returncode if proc is not None else None
        printer.print(f"the worker ended without finishing (exit code {code}); see {run.log_path}")
        return 1
    return 0 if printer.finished.status == "completed" else 1


def follow_export(layout: ExportLayout, proc: subprocess.Popen | None = None, out: TextIO = sys.stdout) -> int:
    """Print an export's events until it ends; Ctrl-C stops it after the current step (twice: at once).

    Returns 0 when the export completed with no failed check, 1 otherwise.
    """
    printer = ExportPrinter(out)
    follow(EventTail(layout.events_path), printer, alive=_alive(proc, layout.running),
           stop=lambda now: layout.stop(now=now))
    if printer.finished is None:
        printer.print(f"the export worker ended without finishing; see {layout.log_path}")
        return 1
    return 0 if printer.finished.status == "completed" and not printer.failed_checks else 1
