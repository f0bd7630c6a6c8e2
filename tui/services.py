"""What the app works with, in one object: the runs root and the collaborators that start jobs and workers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunedeck.tui.chat_client import ClientFactory, spawn_worker
from tunedeck.tui.inspector import CommandFactory, worker_command
from tunedeck.tui.launcher import Launcher, WorkerLauncher
from tunedeck.tui.screens.eval import EvalLauncher, WorkerEvalLauncher
from tunedeck.tui.screens.export import ExportLauncher, WorkerExportLauncher


@dataclass(frozen=True)
class Services:
    """Handed to the app once; tests build one with recording or replaying collaborators in place of workers."""

    runs_root: Path
    launcher: Launcher  # creates a run folder and starts (or resumes) its training
    export_launcher: ExportLauncher
    eval_launcher: EvalLauncher
    inspect_command: CommandFactory  # the dataset inspection worker's command line
    chat_client: ClientFactory  # connects a chat pane to a chat worker

    @classmethod
    def default(cls, runs_root: Path) -> Services:
        """The real ones: detached workers and worker subprocesses of this interpreter."""
        runs_root = Path(runs_root)
        return cls(runs_root=runs_root, launcher=WorkerLauncher(runs_root), export_launcher=WorkerExportLauncher(),
                   eval_launcher=WorkerEvalLauncher(), inspect_command=worker_command, chat_client=spawn_worker)
