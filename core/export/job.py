"""The export job (`python -m tunedeck.core.worker export RUN_DIR`) and the start that launches it detached."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tunedeck.core.atomic import write_atomic
from tunedeck.core.config import ExportConfig
from tunedeck.core.export.layout import ExportLayout, held_adapter, resolve_adapter
from tunedeck.core.export.recipe import run_export
from tunedeck.core.jobs.runner import Job, run_job
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import EventWriter, ExportFinished


def start_export(run: RunDir, options: ExportConfig) -> subprocess.Popen:
    """Start an export worker for a run in its own session; its events go to export/events.jsonl."""
    layout = ExportLayout.for_run(run, options.ollama_name)
    resolve_adapter(run, options.checkpoint)  # refuse a missing checkpoint before anything starts
    layout.refuse_if_running(f"an export of run '{run.run_id}'")
    layout.root.mkdir(parents=True, exist_ok=True)
    write_atomic(layout.request_path, options.model_dump_json(indent=2) + "\n")
    layout.events_path.write_bytes(b"")  # the events file holds the latest export only; report.json keeps results
    return layout.spawn("export", run.root)


def run_export_job(run_path: Path) -> int:
    """Worker side: read export/request.json, run the recipe, report every outcome as an event.

    Exit code 0 when the export completed, 1 when it stopped or failed, 2 when its input was wrong."""
    run = RunDir(run_path)
    layout = ExportLayout.for_run(run)
    layout.root.mkdir(parents=True, exist_ok=True)
    try:
        options = ExportConfig.model_validate_json(layout.request_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        options = run.load_config().export
    layout = ExportLayout.for_run(run, options.ollama_name)
    events = EventWriter(layout.events_path)
    job = Job(layout, events.emit, ExportFinished, boundary="step")

    def export(cancel) -> ExportFinished:
        with held_adapter(run, options.checkpoint):  # a checkpoint stays put while training may still rotate
            return run_export(run, options, events, cancel)

    return run_job(job, export,
                   final_status=lambda done: {"report": done.report, "message": done.message},
                   exit_code=lambda done: 0 if done.status == "completed" else 1)
