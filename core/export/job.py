"""The export worker job (`python -m tunedeck.core.worker export RUN_DIR`) and the launcher that starts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.config import ExportConfig
from tunedeck.core.errors import RunError, TunedeckError
from tunedeck.core.events import EventWriter, ExportFinished, Log
from tunedeck.core.export.layout import ExportLayout, resolve_adapter
from tunedeck.core.runs import RunDir, pid_alive, signal_worker


def read_export_status(layout: ExportLayout) -> dict[str, Any]:
    try:
        return json.loads(layout.status.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def update_export_status(layout: ExportLayout, **fields: Any) -> None:
    status = read_export_status(layout)
    status.update(fields, updated_at=time.time())
    write_atomic(layout.status, json.dumps(status, indent=2, ensure_ascii=False) + "\n")


def export_running(layout: ExportLayout) -> bool:
    status = read_export_status(layout)
    pid = status.get("pid")
    return status.get("status") in ("starting", "running") and bool(pid) and pid_alive(int(pid))


def start_export(run: RunDir, options: ExportConfig) -> subprocess.Popen:
    """Start an export worker for a run in its own session; its events go to export/events.jsonl."""
    layout = ExportLayout.for_run(run, options.ollama_name)
    resolve_adapter(run, options.checkpoint)  # refuse a missing checkpoint before anything starts
    if export_running(layout):
        raise RunError(f"an export of run '{run.run_id}' is already running", where=str(layout.root),
                       hint="wait for it, or stop it first")
    layout.root.mkdir(parents=True, exist_ok=True)
    write_atomic(layout.request, options.model_dump_json(indent=2) + "\n")
    layout.events.write_bytes(b"")  # the events file holds the latest export only; report.json keeps results
    update_export_status(layout, status="starting", pid=None, started_at=time.time())
    log = open(layout.log, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tunedeck.core.worker", "export", str(run.path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except OSError as exc:
        update_export_status(layout, status="failed", error=str(exc))
        raise RunError(f"could not start the export worker: {exc.strerror}", where=str(run.path)) from None
    finally:
        log.close()
    update_export_status(layout, pid=proc.pid)
    return proc


def stop_export(layout: ExportLayout, now: bool = False) -> bool:
    return signal_worker(read_export_status(layout).get("pid"), now)


def run_export_job(run_path: Path) -> int:
    """Worker side: read export/request.json, run the pipeline, report every outcome as an event."""
    from tunedeck.core.export.pipeline import run_export
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
    update_export_status(layout, status="running", pid=os.getpid())
    try:
        finished = run_export(run, options, events, cancel)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the event stream
        if isinstance(exc, InterruptedError | KeyboardInterrupt) and cancel.is_set():
            finished = ExportFinished(status="stopped", message="stopped on request")
        else:
            traceback.print_exc(file=sys.stderr)
            error = events.emit(classify(exc))
            events.emit(ExportFinished(status="failed", message=error.message))
            update_export_status(layout, status="failed", error=error.message)
            return 2 if isinstance(exc, TunedeckError) else 1
    events.emit(finished)
    update_export_status(layout, status=finished.status, report=finished.report, message=finished.message)
    return 0 if finished.status == "completed" else 1


def _install_stop_handlers(cancel: threading.Event, events: EventWriter, layout: ExportLayout) -> None:
    """First SIGTERM/SIGINT: stop after the current step. Second: stop now (temporary files stay hidden)."""

    def handle(signum, frame):  # noqa: ARG001
        if cancel.is_set():
            events.emit(ExportFinished(status="stopped", message="stopped at once by a second signal"))
            update_export_status(layout, status="stopped")
            os._exit(130)
        cancel.set()
        events.emit(Log(level="info", message=f"received {signal.Signals(signum).name}: stopping after this step"))

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
