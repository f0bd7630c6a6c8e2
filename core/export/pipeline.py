"""The export pipeline: each step runs once, writes under a temporary name, and is skipped when already complete."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.config import Config, ExportConfig
from tunedeck.core.export.layout import ExportLayout, resolve_adapter
from tunedeck.core.export.manifest import Manifest, fingerprint, inputs_key
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import (
    EventWriter,
    ExportCheck,
    ExportFinished,
    ExportProgress,
    ExportStarted,
    ExportStep,
    Log,
)

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.5


class ExportStopped(Exception):
    """The export was asked to stop between steps."""


@dataclass
class Export:
    run: RunDir
    config: Config
    options: ExportConfig
    events: EventWriter
    cancel: threading.Event
    layout: ExportLayout = field(init=False)
    manifest: Manifest = field(init=False)
    cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.layout = ExportLayout.for_run(self.run, self.options.ollama_name)
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(self.layout.root)

    def step(self, name: str, key: str, outputs: list[Path], work: Callable[[], dict[str, Any] | None]) -> dict:
        """Run `work` unless the manifest shows this step complete with the same inputs and intact outputs."""
        record = self.manifest.completed(name, key)
        if record is not None:
            self.events.emit(ExportStep(step=name, state="skipped", message="already complete",
                                        outputs=[str(p) for p in outputs]))
            return record.get("result", {})
        if self.cancel.is_set():
            raise ExportStopped(f"stopped before {name}")
        self.manifest.forget(name)
        self.events.emit(ExportStep(step=name, state="started"))
        started = time.perf_counter()
        try:
            result = work() or {}
        except BaseException as exc:
            self.events.emit(ExportStep(step=name, state="failed", message=str(exc).splitlines()[0] if str(exc) else
                                        type(exc).__name__, seconds=round(time.perf_counter() - started, 2)))
            raise
        seconds = time.perf_counter() - started
        self.manifest.record(name, key, outputs, result, seconds)
        self.events.emit(ExportStep(step=name, state="done", seconds=round(seconds, 2),
                                    message=result.get("message", ""), outputs=[str(p) for p in outputs]))
        return result

    def progress(self, step: str) -> Callable[[float, str], None]:
        last = [0.0]

        def report(fraction: float, message: str = "") -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S or fraction >= 1.0:
                last[0] = now
                self.events.emit(ExportProgress(step=step, fraction=round(fraction, 3), message=message))
        return report

    def say(self, message: str, level: str = "info") -> None:
        log.info(message)
        self.events.emit(Log(level=level, message=message))

    def check(self, name: str, target: str, result: dict[str, Any]) -> None:
        details = {k: v for k, v in result.items() if k not in ("passed", "message")}
        self.events.emit(ExportCheck(name=name, target=target, passed=result.get("passed"),
                                     message=result.get("message", ""), details=details))


def plan(options: ExportConfig, with_ollama: bool = False) -> list[str]:
    """Step names in the order they run (ollama:* only where ollama is installed)."""
    quants = options.quantizations
    return ["merge", "gguf", *[f"quantize:{q}" for q in quants], *[f"modelfile:{q}" for q in quants],
            "check:modelfile", "check:merged",
            *[s for q in quants for s in (f"check:{q}", *([f"ollama:{q}"] if with_ollama else []))]]


def run_export(run: RunDir, options: ExportConfig, events: EventWriter, cancel: threading.Event) -> ExportFinished:
    """Export a run end to end; returns the finished event (errors propagate to the worker)."""
    from tunedeck.core.export import steps

    config = run.load_config()
    export = Export(run, config, options, events, cancel)
    for leftover in export.layout.remove_leftovers():
        export.say(f"removed an unfinished file from an earlier export: {leftover.name}")
    checkpoint, adapter = resolve_adapter(run, options.checkpoint)
    steps_planned = plan(options, with_ollama=shutil.which("ollama") is not None)
    events.emit(ExportStarted(run_id=run.run_id, checkpoint=checkpoint, adapter=str(adapter), steps=steps_planned,
                              options=options.model_dump(mode="json")))
    try:
        report = steps.run_steps(export, adapter, checkpoint)
    except ExportStopped as exc:
        return ExportFinished(status="stopped", message=str(exc))
    write_atomic(export.layout.report, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    failed = [c for c in report["checks"] if c["passed"] is False]
    message = (f"{len(failed)} check(s) failed: " + ", ".join(f"{c['name']} ({c['target']})" for c in failed)
               if failed else "every check passed")
    return ExportFinished(status="completed", report=str(export.layout.report), message=message)


def adapter_key(adapter: Path) -> dict[str, Any]:
    return {name: fingerprint(adapter / name) for name in ("adapter_config.json", "adapter_model.safetensors",
                                                            "chat_template.jinja", "tokenizer_config.json")
            if (adapter / name).is_file()}


__all__ = ["Export", "ExportStopped", "adapter_key", "inputs_key", "plan", "run_export"]
