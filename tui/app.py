"""The Textual app: holds the services and answers the screens' messages by moving between the screens."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from tunedeck.core.config import Config
from tunedeck.core.errors import TunedeckError
from tunedeck.core.jobs.runs import RunDir, find_run
from tunedeck.tui.chat_client import ChatTarget
from tunedeck.tui.screens.chat import ChatScreen
from tunedeck.tui.screens.eval import EvalScreen
from tunedeck.tui.screens.export import ExportScreen
from tunedeck.tui.screens.live import LiveScreen
from tunedeck.tui.screens.new_run import NewRunScreen
from tunedeck.tui.screens.review import ReviewScreen
from tunedeck.tui.screens.runs import RunsScreen
from tunedeck.tui.services import Services


class TunedeckApp(App[None]):
    TITLE = "tunedeck"
    CSS_PATH = "app.tcss"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, runs_root: Path | None = None, preset: str | None = None, attach: str | None = None,
                 services: Services | None = None):
        """`runs_root` alone gives the real services; tests pass `services` with their own collaborators."""
        super().__init__()
        if services is None:
            if runs_root is None:
                raise TypeError("TunedeckApp needs runs_root or services")
            services = Services.default(Path(runs_root))
        self.services = services
        self.preset = preset
        self.attach_to = attach
        self.launching = False  # a run is being created and started: a second launch waits for it

    @property
    def runs_root(self) -> Path:
        return self.services.runs_root

    def on_mount(self) -> None:
        self.push_screen(RunsScreen(self.runs_root))
        if self.attach_to:
            self.open_run(self.attach_to)

    # -- the screens' messages ---------------------------------------------------------------------------

    def on_runs_screen_open_run(self, message: RunsScreen.OpenRun) -> None:
        self.open_run(message.run_id)

    def on_runs_screen_open_export(self, message: RunsScreen.OpenExport) -> None:
        self.open_export(message.run_id)

    def on_runs_screen_open_eval(self, message: RunsScreen.OpenEval) -> None:
        self.open_eval(message.run_id)

    def on_runs_screen_open_chat(self, message: RunsScreen.OpenChat) -> None:
        self.open_chat(message.run_id)

    def on_runs_screen_resume_run(self, message: RunsScreen.ResumeRun) -> None:
        self.resume_run(message.run_id)

    def on_runs_screen_new_run(self, message: RunsScreen.NewRun) -> None:
        self.push_screen(NewRunScreen(self.preset, self.services.inspect_command))

    def on_review_screen_launch_run(self, message: ReviewScreen.LaunchRun) -> None:
        if not self.launching:
            self.notify("starting the run…")
        self.launch_run(message.config, message.label, message.preset, refused="run not started")

    def on_live_screen_launch_run(self, message: LiveScreen.LaunchRun) -> None:
        self.launch_run(message.config, message.label, message.preset, refused="not relaunched")

    # -- what they ask for -------------------------------------------------------------------------------

    def find(self, run_id: str, refused: str) -> RunDir | None:
        """The run, or None after saying why not under the title `refused`."""
        try:
            return find_run(self.runs_root, run_id)
        except TunedeckError as exc:
            self.notify(exc.one_line(), title=refused, severity="error")
            return None

    def open_run(self, run_id: str) -> None:
        """Show a run's live view on top of the runs list (replaying its history, then following it)."""
        run = self.find(run_id, "cannot open run")
        if run is None:
            return
        while len(self.screen_stack) > 2 and not isinstance(self.screen, RunsScreen):
            self.pop_screen()
        self.push_screen(LiveScreen(run))

    def open_export(self, run_id: str) -> None:
        """The export wizard for a run: merge, GGUF, quantize, Modelfile, with its self-checks."""
        run = self.find(run_id, "cannot export")
        if run is None:
            return
        try:
            defaults = run.load_config().export.model_dump()
        except TunedeckError as exc:
            self.notify(exc.one_line(), title="cannot export", severity="error")
            return
        self.push_screen(ExportScreen(run.path, self.services.export_launcher, defaults))

    def open_eval(self, run_id: str) -> None:
        """Evaluate a run on its held-out rows (side by side with the base model) and show the metrics."""
        run = self.find(run_id, "cannot evaluate")
        if run is not None:
            self.push_screen(EvalScreen(run.path, self.services.eval_launcher))

    def open_chat(self, run_id: str) -> None:
        """The chat pane for a run: its fine-tuned model, side by side with its base (or a checkpoint, a GGUF)."""
        run = self.find(run_id, "cannot chat")
        if run is None:
            return
        if not (run.adapter / "adapter_config.json").is_file() and not any(run.checkpoints.glob("checkpoint-*")):
            self.notify(f"{run_id} has no adapter yet: chat once training saved one", title="cannot chat",
                        severity="warning")
            return
        steps = sorted(int(p.name.split("-")[1]) for p in run.checkpoints.glob("checkpoint-*")
                       if p.name.split("-")[1].isdigit())
        newest = None if run.adapter.is_dir() or not steps else str(steps[-1])
        target = ChatTarget(str(run.path), checkpoint=newest)
        self.push_screen(ChatScreen(target, self.services.chat_client, run=run.path, title=run_id))

    def resume_run(self, run_id: str) -> None:
        """Continue a stopped or failed run from its newest complete checkpoint, then watch it."""
        try:
            self.services.launcher.resume(find_run(self.runs_root, run_id))
        except TunedeckError as exc:
            self.notify(exc.one_line(), title="cannot resume", severity="error")
            return
        self.open_run(run_id)

    def launch_run(self, config: Config, label: str, preset: str | None, refused: str) -> None:
        """Create and start a run off the event loop (pre-flight checks take a moment), then watch it."""
        if self.launching:
            return
        self.launching = True
        self._launch(config, label, preset, refused)

    @work(thread=True, exit_on_error=False, group="launch")
    def _launch(self, config: Config, label: str, preset: str | None, refused: str) -> None:
        try:
            run = self.services.launcher.launch(config, label, preset)
        except (TunedeckError, OSError) as exc:
            message = exc.one_line() if isinstance(exc, TunedeckError) else str(exc)
            self.call_from_thread(self._launched, None, message, refused)
            return
        self.call_from_thread(self._launched, run.run_id, "", refused)

    def _launched(self, run_id: str | None, message: str, refused: str) -> None:
        self.launching = False
        if run_id is None:
            self.notify(message, title=refused, severity="error")
        else:
            self.open_run(run_id)
