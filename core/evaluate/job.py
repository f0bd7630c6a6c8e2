"""Running an evaluation: detached as a worker (`python -m tunedeck.core.worker eval RUN_DIR`) or in the foreground."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.errors import RunError
from tunedeck.core.evaluate.layout import EvalLayout, EvalRequest
from tunedeck.core.jobs.runs import RunDir, signal_worker
from tunedeck.core.stream.events import EvalFinished, Event, EventWriter, Log


def prepare(run: RunDir, request: EvalRequest) -> EvalLayout:
    """Refuse what cannot be evaluated (no adapter, no held-out rows), then record the request, fresh events."""
    from tunedeck.core.evaluate.heldout import load_held_out
    from tunedeck.core.export.layout import resolve_adapter

    layout = EvalLayout.for_run(run)
    resolve_adapter(run, request.checkpoint)
    load_held_out(run.load_config(), request.data, request.max_rows)
    if layout.running():
        raise RunError(f"an evaluation of run '{run.run_id}' is already running", where=str(layout.root),
                       hint="wait for it, or stop it first")
    layout.root.mkdir(parents=True, exist_ok=True)
    write_atomic(layout.request, request.to_json())
    layout.events.write_bytes(b"")  # the events file holds the latest evaluation; metrics.json keeps results
    return layout


def start_eval(run: RunDir, request: EvalRequest) -> subprocess.Popen:
    """Start an evaluation worker in its own session; its events go to eval/events.jsonl."""
    layout = prepare(run, request)
    return layout.spawn("eval", run.path, "evaluation")


def stop_eval(layout: EvalLayout, now: bool = False) -> bool:
    return signal_worker(layout.read_status().get("pid"), now)


def execute(run: RunDir, request: EvalRequest, cancel: threading.Event,
            on_event: Callable[[Event], None] | None = None) -> EvalFinished:
    """Evaluate and report every outcome as events (eval/events.jsonl, and on_event); never raises for failures."""
    from tunedeck.core.evaluate.recipe import run_evaluation
    from tunedeck.core.worker import classify

    layout = EvalLayout.for_run(run)
    writer = EventWriter(layout.events)

    def emit(event: Event) -> Event:
        writer.emit(event)
        if on_event is not None:
            on_event(event)
        return event

    layout.update_status(status="running", pid=os.getpid())
    try:
        metrics = run_evaluation(run, request, emit, cancel)
        finished = EvalFinished(status="completed", metrics=str(layout.metrics), message=headline(metrics))
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the event stream
        if isinstance(exc, InterruptedError | KeyboardInterrupt) and (cancel.is_set() or on_event is not None):
            finished = EvalFinished(status="stopped", message="stopped on request")
        else:
            traceback.print_exc(file=sys.stderr)
            error = emit(classify(exc))
            finished = EvalFinished(status="failed", message=error.message)
    emit(finished)
    layout.update_status(status=finished.status, message=finished.message)
    writer.close()
    return finished


def headline(metrics: dict[str, Any]) -> str:
    """One line: fine-tuned (and base) loss and ROUGE-L."""
    parts = []
    for side in ("finetuned", "base"):
        if side in metrics:
            m = metrics[side]
            loss = f"{m['eval_loss']:.4f}" if m.get("eval_loss") is not None else "-"
            parts.append(f"{side} eval_loss {loss} rougeL {100 * (m.get('rougeL') or 0):.1f}")
    return f"{metrics['rows']} rows: " + "; ".join(parts)


def run_eval_job(run_path: Path) -> int:
    """Worker side: read eval/request.json and evaluate; SIGTERM stops after the current batch."""
    run = RunDir(run_path)
    layout = EvalLayout.for_run(run)
    try:
        request = EvalRequest.from_json(layout.request.read_text(encoding="utf-8"))
    except FileNotFoundError:
        request = EvalRequest()
        layout.root.mkdir(parents=True, exist_ok=True)
    cancel = threading.Event()
    _install_stop_handlers(cancel, layout)
    finished = execute(run, request, cancel)
    if finished.status == "failed":
        return 1
    return 0 if finished.status == "completed" else 130


def _install_stop_handlers(cancel: threading.Event, layout: EvalLayout) -> None:
    """First SIGTERM/SIGINT: stop after the current batch. Second: stop now."""

    def handle(signum, frame):  # noqa: ARG001
        if cancel.is_set():
            EventWriter(layout.events).emit(EvalFinished(status="stopped", message="stopped at once"))
            layout.update_status(status="stopped")
            os._exit(130)
        cancel.set()
        EventWriter(layout.events).emit(
            Log(level="info", message=f"received {signal.Signals(signum).name}: stopping after this batch"))

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
