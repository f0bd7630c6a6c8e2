"""The export worker job (`python -m tunedeck.core.worker export RUN_DIR`) and the launcher that starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path

from tunedeck.core.atomic import write_atomic
from tunedeck.core.config import ExportConfig
from tunedeck.core.errors import RunError, TunedeckError
from tunedeck.core.export.layout import ExportLayout, resolve_adapter
from tunedeck.core.jobs.runs import RunDir, signal_worker
from tunedeck.core.stream.events import EventWriter, ExportFinished, Log


def start_export(run: RunDir, options: ExportConfig) -> subprocess.Popen:
    """Start an export worker for a run in its own session; its events go to export/events.jsonl."""
    layout = ExportLayout.for_run(run, options.ollama_name)
    resolve_adapter(run, options.checkpoint)  # refuse a missing checkpoint before anything starts
    if layout.running():
        raise RunError(f"an export of run '{run.run_id}' is already running", where=str(layout.root),
                       hint="wait for it, or stop it first")
    layout.root.mkdir(parents=True, exist_ok=True)
    write_atomic(layout.request, options.model_dump_json(indent=2) + "\n")
    layout.events.write_bytes(b"")  # the events file holds the latest export only; report.json keeps results
    return layout.spawn("export", run.path, "export")


def stop_export(layout: ExportLayout, now: bool = False) -> bool:
    return signal_worker(layout.read_status().get("pid"), now)


def run_export_job(run_path: Path) -> int:
    """Worker side: read export/request.json, run the pipeline, report every outcome as an event."""
    from tunedeck.core.export.recipe import run_export
    from tunedeck.core.worker import classify

    run = RunDir(run_path)
    root = run.path / "export"
    root.mkdir(parents=True, exist_ok=True)
    try:
        options = ExportConfig.model_validate_json((root / "request.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        options = run.load_config().export
    layout = ExportLayout.for_run(run, options.ollama_name)
    events = EventWriter(layout.events)
    cancel = threading.Event()
    _install_stop_handlers(cancel, events, layout)
    layout.update_status(status="running", pid=os.getpid())
    try:
        finished = run_export(run, options, events, cancel)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the event stream
        if isinstance(exc, InterruptedError | KeyboardInterrupt) and cancel.is_set():
            finished = ExportFinished(status="stopped", message="stopped on request")
        else:
            traceback.print_exc(file=sys.stderr)
            error = events.emit(classify(exc))
            events.emit(ExportFinished(status="failed", message=error.message))
            layout.update_status(status="failed", error=error.message)
            return 2 if isinstance(exc, TunedeckError) else 1
    events.emit(finished)
    layout.update_status(status=finished.status, report=finished.report, message=finished.message)
    return 0 if finished.status == "completed" else 1


def _install_stop_handlers(cancel: threading.Event, events: EventWriter, layout: ExportLayout) -> None:
    """First SIGTERM/SIGINT: stop after the current step. Second: stop now (temporary files stay hidden)."""

    def handle(signum, frame):  # noqa: ARG001
        if cancel.is_set():
            events.emit(ExportFinished(status="stopped", message="stopped at once by a second signal"))
            layout.update_status(status="stopped")
            os._exit(130)
        cancel.set()
        events.emit(Log(level="info", message=f"received {signal.Signals(signum).name}: stopping after this step"))

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
