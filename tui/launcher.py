"""Starting a run from the app: the collaborator that turns a validated config into a running worker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tunedeck.core.config import Config
from tunedeck.core.jobs.runs import RunDir


class Launcher(Protocol):
    """Creates a run folder for a config and starts (or records) its training."""

    runs_root: Path

    def launch(self, config: Config, label: str, preset: str | None) -> RunDir: ...

    def resume(self, run: RunDir) -> None: ...


@dataclass
class WorkerLauncher:
    """The real one: pre-flight checks, a new run folder, and a detached training worker."""

    runs_root: Path

    def launch(self, config: Config, label: str, preset: str | None) -> RunDir:
        from tunedeck.core.jobs.runs import create_run, start_worker
        from tunedeck.core.training.preflight import preflight

        preflight(config)
        run = create_run(self.runs_root, config, label, preset=preset)
        start_worker(run)
        return run

    def resume(self, run: RunDir) -> None:
        from tunedeck.core.jobs.runs import resume_run

        resume_run(run)
