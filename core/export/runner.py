"""The export's step runner: each step runs once, writes under a temporary name, and is skipped when complete."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.core.config import Config, ExportConfig
from tunedeck.core.export.layout import ExportLayout
from tunedeck.core.export.manifest import Manifest
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import EventWriter, ExportCheck, ExportProgress, ExportStep, Log

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.5


class ExportStopped(Exception):
    """The export was asked to stop between steps."""


@dataclass
class Export:
    """One export in progress: its run, options, folder and manifest, and the events it reports."""

    run: RunDir
    config: Config
    options: ExportConfig
    events: EventWriter
    cancel: threading.Event
    layout: ExportLayout = field(init=False)
    manifest: Manifest = field(init=False)

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

    def output_fingerprint(self, step: str, path: Path) -> Any:
        """The fingerprint a finished step recorded for one of its outputs (an input of the next step's key)."""
        return self.manifest.output_fingerprint(step, path.name)

    def progress(self, step: str) -> Callable[[float, str], None]:
        """A progress callback for a long step, emitting at most every PROGRESS_EVERY_S seconds (and at 100%)."""
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
        """Report one check's outcome as an event (the report gathers the same outcomes at the end)."""
        details = {k: v for k, v in result.items() if k not in ("passed", "message")}
        self.events.emit(ExportCheck(name=name, target=target, passed=result.get("passed"),
                                     message=result.get("message", ""), details=details))
