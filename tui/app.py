"""The Textual app: holds the collaborators (runs root, launcher) and moves between the screens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App
from textual.binding import Binding

from tunedeck.core.errors import TunedeckError
from tunedeck.core.jobs.runs import find_run
from tunedeck.tui.inspector import CommandFactory
from tunedeck.tui.launcher import Launcher, WorkerLauncher
from tunedeck.tui.screens.runs import RunsScreen

if TYPE_CHECKING:
    from tunedeck.tui.chat_client import ClientFactory
    from tunedeck.tui.screens.eval import EvalLauncher
    from tunedeck.tui.screens.export import ExportLauncher


class TunedeckApp(App[None]):
    TITLE = "tunedeck"
    CSS_PATH = "app.tcss"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, runs_root: Path, preset: str | None = None, attach: str | None = None,
                 launcher: Launcher | None = None, export_launcher: ExportLauncher | None = None,
                 eval_launcher: EvalLauncher | None = None, inspect_command: CommandFactory | None = None,
                 chat_client_factory: ClientFactory | None = None):
        super().__init__()
        self.runs_root = Path(runs_root)
        self.preset = preset
        self.attach_to = attach
        self.launcher = launcher or WorkerLauncher(self.runs_root)
        self.export_launcher = export_launcher
        self.eval_launcher = eval_launcher
        self.inspect_command = inspect_command  # the dataset inspection worker's command line (tests replay one)
        self.chat_client_factory = chat_client_factory

    def on_mount(self) -> None:
        self.push_screen(RunsScreen(self.runs_root))
        if self.attach_to:
            self.open_run(self.attach_to)

    def open_run(self, run_id: str) -> None:
        """Show a run's live view on top of the runs list (replaying its history, then following it)."""
        from tunedeck.tui.screens.live import LiveScreen

        try:
            run = find_run(self.runs_root, run_id)
        except TunedeckError as exc:
            self.notify(exc.one_line(), title="cannot open run", severity="error")
            return
        while len(self.screen_stack) > 2 and not isinstance(self.screen, RunsScreen):
            self.pop_screen()
        self.push_screen(LiveScreen(run))

    def open_export(self, run_id: str) -> None:
        """The export wizard for a run: merge, GGUF, quantize, Modelfile, with its self-checks."""
        from tunedeck.tui.screens.export import ExportScreen, WorkerExportLauncher

        try:
            run = find_run(self.runs_root, run_id)
            defaults = run.load_config().export.model_dump()
        except TunedeckError as exc:
            self.notify(exc.one_line(), title="cannot export", severity="error")
            return
        self.push_screen(ExportScreen(run.path, self.export_launcher or WorkerExportLauncher(), defaults))

    def open_eval(self, run_id: str) -> None:
        """Evaluate a run on its held-out rows (side by side with the base model) and show the metrics."""
        from tunedeck.tui.screens.eval import EvalScreen, WorkerEvalLauncher

        try:
            run = find_run(self.runs_root, run_id)
        except TunedeckError as exc:
            self.notify(exc.one_line(), title="cannot evaluate", severity="error")
            return
        self.push_screen(EvalScreen(run.path, self.eval_launcher or WorkerEvalLauncher()))

    def open_chat(self, run_id: str) -> None:
        """The chat pane for a run: its fine-tuned model, side by side with its base (or a checkpoint, a GGUF)."""
        from tunedeck.tui.chat_client import ChatTarget, spawn_worker
        from tunedeck.tui.screens.chat import ChatScreen

        try:
            run = find_run(self.runs_root, run_id)
        except TunedeckError as exc:
            self.notify(exc.one_line(), title="cannot chat", severity="error")
            return
        if not (run.adapter / "adapter_config.json").is_file() and not any(run.checkpoints.glob("checkpoint-*")):
            self.notify(f"{run_id} has no adapter yet: chat once training saved one", title="cannot chat",
                        severity="warning")
            return
        steps = sorted(int(p.name.split("-")[1]) for p in run.checkpoints.glob("checkpoint-*")
                       if p.name.split("-")[1].isdigit())
        newest = None if run.adapter.is_dir() or not steps else str(steps[-1])
        target = ChatTarget(str(run.path), checkpoint=newest)
        self.push_screen(ChatScreen(target, self.chat_client_factory or spawn_worker, run=run.path, title=run_id))

    def resume_run(self, run_id: str) -> None:
        """Continue a stopped or failed run from its newest complete checkpoint, then watch it."""
        try:
            self.launcher.resume(find_run(self.runs_root, run_id))
        except TunedeckError as exc:
            self.notify(exc.one_line(), title="cannot resume", severity="error")
            return
        self.open_run(run_id)

    def new_run(self) -> None:
        from tunedeck.tui.screens.new_run import NewRunScreen

        self.push_screen(NewRunScreen(self.preset))
