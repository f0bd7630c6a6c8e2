"""Running an evaluation: detached as a worker (`python -m tunedeck.core.worker eval RUN_DIR`) or in the foreground."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.evaluate.heldout import load_held_out
from tunedeck.core.evaluate.layout import EvalLayout, EvalRequest
from tunedeck.core.evaluate.recipe import run_evaluation
from tunedeck.core.export.layout import held_adapter, resolve_adapter
from tunedeck.core.jobs.runner import EXIT_STOPPED, Job, run_job
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import EvalFinished, Event, EventWriter


def prepare(run: RunDir, request: EvalRequest) -> EvalLayout:
    """Refuse what cannot be evaluated (no adapter, no held-out rows), then record the request, fresh events."""
    layout = EvalLayout.for_run(run)
    resolve_adapter(run, request.checkpoint)
    load_held_out(run.load_config(), request.data, request.max_rows)
    layout.refuse_if_running(f"an evaluation of run '{run.run_id}'")
    layout.root.mkdir(parents=True, exist_ok=True)
    write_atomic(layout.request_path, request.to_json())
    layout.events_path.write_bytes(b"")  # the events file holds the latest evaluation; metrics.json keeps results
    return layout


def start_eval(run: RunDir, request: EvalRequest) -> subprocess.Popen:
    """Start an evaluation worker in its own session; its events go to eval/events.jsonl."""
    prepare(run, request)
    return EvalLayout.for_run(run).spawn("eval", run.root)


def execute(run: RunDir, request: EvalRequest, cancel: threading.Event | None = None,
            on_event: Callable[[Event], None] | None = None) -> EvalFinished:
    """Evaluate in this process (`tunedeck eval`) and report every outcome as events (eval/events.jsonl, and
    on_event); never raises for failures. Ctrl-C stops after the current batch (twice: at once)."""
    return _run_eval(run, request, cancel, on_event)[1]


def run_eval_job(run_path: Path) -> int:
    """Worker side: read eval/request.json and evaluate; SIGTERM stops after the current batch.

    Exit code 0 when it completed, 130 when it stopped, 2 when its input was wrong, 1 for any other failure."""
    run = RunDir(run_path)
    layout = EvalLayout.for_run(run)
    try:
        request = EvalRequest.from_json(layout.request_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        request = EvalRequest()
    return _run_eval(run, request)[0]


def _run_eval(run: RunDir, request: EvalRequest, cancel: threading.Event | None = None,
              on_event: Callable[[Event], None] | None = None) -> tuple[int, EvalFinished]:
    """The evaluation as the run's eval job: its lock, stop signals and status; the exit code and finished event."""
    layout = EvalLayout.for_run(run)
    layout.root.mkdir(parents=True, exist_ok=True)
    writer = EventWriter(layout.events_path)

    def emit(event: Event) -> Event:
        writer.emit(event)
        if on_event is not None:
            on_event(event)
        return event

    def evaluate(cancel: threading.Event) -> EvalFinished:
        with held_adapter(run, request.checkpoint):  # a checkpoint stays put while training may still rotate
            metrics = run_evaluation(run, request, emit, cancel)
        return EvalFinished(status="completed", metrics=str(layout.metrics), message=headline(metrics))

    job = Job(layout, emit, EvalFinished, boundary="batch", cancel=cancel or threading.Event())
    try:
        code = run_job(job, evaluate, final_status=lambda done: {"message": done.message},
                       exit_code=lambda done: 0 if done.status == "completed" else EXIT_STOPPED)
    finally:
        writer.close()
    return code, job.outcome


def headline(metrics: dict[str, Any]) -> str:
    """One line: fine-tuned (and base) loss and ROUGE-L."""
    parts = []
    for side in ("finetuned", "base"):
        if side in metrics:
            m = metrics[side]
            loss = f"{m['eval_loss']:.4f}" if m.get("eval_loss") is not None else "-"
            parts.append(f"{side} eval_loss {loss} rougeL {100 * (m.get('rougeL') or 0):.1f}")
    return f"{metrics['rows']} rows: " + "; ".join(parts)
