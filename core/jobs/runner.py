"""The wrapper every job body runs in: the lock, stop signals, status.json, and every failure as error events."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunedeck.core.errors import TunedeckError
from tunedeck.core.errors.classify import classify
from tunedeck.core.jobs.folder import JobFolder
from tunedeck.core.stream.events import Error, Event, Log

EXIT_STOPPED = 130  # the exit code of a job a second signal ended, and of a stopped evaluation
INTERRUPTS = (InterruptedError, KeyboardInterrupt, SystemExit)  # what a body raises when it honours the cancel


@dataclass
class Job:
    """One job as the process running it sees it."""

    folder: JobFolder  # its lock and status.json
    emit: Callable[[Event], Event]  # where its events go
    finished: Callable[..., Event]  # its finished event type: RunFinished, ExportFinished or EvalFinished
    boundary: str = "step"  # where a first stop signal lets it end: "step" or "batch"
    owns_process: bool = True  # False for a rank a launch job started: that job holds the lock and the pid
    cancel: threading.Event = field(default_factory=threading.Event)
    outcome: Event | None = None  # its finished event, once it ended


Body = Callable[[threading.Event], Event]


def run_job(job: Job, body: Body, final_status: Callable[[Event], dict[str, Any]] = lambda finished: {},
            exit_code: Callable[[Event], int] = lambda finished: 0,
            describe: Callable[[BaseException], Error] = classify) -> int:
    """Run body(cancel) as this job: lock, stop handlers, status running, the finished event and final status.

    The body returns its finished event (completed or stopped). An exception becomes an error event (`describe`)
    and a failed finish; one raised because the cancel was honoured becomes a stopped finish. Returns the exit
    code: exit_code(finished), or 2 for a TunedeckError and 1 for anything else that went wrong. A second worker on
    the same folder gets RunError 'already running (pid N)' before it writes anything.
    """
    lock = job.folder.lock() if job.owns_process else None
    restore = _install_stop_handlers(job)
    try:
        job.folder.update_status(status="running", **({"pid": os.getpid()} if job.owns_process else {}))
        return _finish(job, body, final_status, exit_code, describe)
    finally:
        restore()
        if lock is not None:
            lock.release()


def _finish(job: Job, body: Body, final_status: Callable[[Event], dict[str, Any]],
            exit_code: Callable[[Event], int], describe: Callable[[BaseException], Error]) -> int:
    try:
        finished = body(job.cancel)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the event stream
        if isinstance(exc, INTERRUPTS) and job.cancel.is_set():
            job.outcome = job.emit(job.finished(status="stopped", message="stopped on request"))
            job.folder.update_status(status="stopped", message=job.outcome.message)
            return exit_code(job.outcome)
        try:
            traceback.print_exc(file=sys.stderr)
        except OSError:  # worker.log is on a full disk: the error event below still says what happened
            pass
        error = job.emit(describe(exc))
        job.outcome = job.emit(job.finished(status="failed", message=error.message))
        reached = getattr(job.outcome, "final_step", None)  # a run's: the step it got to
        job.folder.update_status(status="failed", error=error.message, error_kind=error.kind,
                                 **({"step": reached} if reached else {}))
        return 2 if isinstance(exc, TunedeckError) else 1
    job.outcome = job.emit(finished)
    job.folder.update_status(status=finished.status, **final_status(finished))
    return exit_code(finished)


def _install_stop_handlers(job: Job) -> Callable[[], None]:
    """First SIGTERM/SIGINT: set the cancel, so the body stops at its next boundary. Second: stop now.

    Returns what puts the previous handlers back. Signal handlers belong to the main thread: elsewhere none."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(signum: int, frame: Any) -> None:  # noqa: ARG001
        if job.cancel.is_set():
            job.emit(job.finished(status="stopped", message="stopped at once by a second signal"))
            job.folder.update_status(status="stopped")
            os._exit(EXIT_STOPPED)
        job.cancel.set()
        job.emit(Log(level="info",
                     message=f"received {signal.Signals(signum).name}: stopping after this {job.boundary}"))

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
