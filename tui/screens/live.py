"""The live training view: replays a run's events, then follows them; curves, numbers, GPUs, worker log."""

from __future__ import annotations

import time

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Log, ProgressBar, Static
from textual.worker import Worker, WorkerState

from tunedeck.core.config import Config
from tunedeck.core.config_fields import nest
from tunedeck.core.config_files import ConfigBuilder
from tunedeck.core.display import format_duration
from tunedeck.core.errors import TunedeckError
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.history import RunHistory
from tunedeck.core.stream.tail import LogTail, RunTail
from tunedeck.tui.screens.confirm import ConfirmScreen
from tunedeck.tui.styles import run_status
from tunedeck.tui.widgets.curves import CURVE_MODES, LearningRatePlot, LossPlot
from tunedeck.tui.widgets.gpu_panel import GpuPanel, HostPanel

POLL_S = 0.5  # how often the events file and worker.log are read
REDRAW_S = 1.0  # curves are redrawn at most this often; numbers on every poll with news
NO_GPU_PREFIX = "no GPU data"


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None or value != value else format(value, fmt)


def memory_line(memory: dict) -> str:
    """The memory an error event recorded, in one line: each GPU's allocated / total, else the host's RSS."""
    gib = 1 << 30
    parts = [f"GPU {g['index']} {g['allocated'] / gib:.1f} GiB allocated (peak {g['peak_allocated'] / gib:.1f}) "
             f"of {g['total'] / gib:.1f}" for g in memory.get("gpus") or []]
    if not parts and "host_rss" in memory:
        parts.append(f"host RSS {memory['host_rss'] / gib:.2f} GiB (peak {memory.get('host_peak_rss', 0) / gib:.2f})")
        if "address_space_limit" in memory:
            parts.append(f"address-space limit {memory['address_space_limit'] / gib:.1f} GiB")
    return ", ".join(parts) or "not recorded"


def stats_table(history: RunHistory) -> Table:
    """The exact latest numbers of a run."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim")
    table.add_column(justify="right")
    last = history.steps.last
    best = history.best_eval()
    latest_eval = history.evals[-1] if history.evals else None
    table.add_row("loss", _number(last.loss if last else None, ".4f"))
    table.add_row("eval loss", _number(latest_eval.eval_loss if latest_eval else None, ".4f"))
    table.add_row("best eval", f"{best.eval_loss:.4f} @ step {best.step}" if best else "-")
    table.add_row("learning rate", _number(last.lr if last else None, ".2e"))
    table.add_row("grad norm", _number(last.grad_norm if last else None, ".3f"))
    table.add_row("tokens/s", _number(last.tokens_per_s if last else None, ",.0f"))
    table.add_row("samples/s", _number(last.samples_per_s if last else None, ".2f"))
    return table


class LiveScreen(Screen[None]):
    CSS_PATH = "live.tcss"

    class LaunchRun(Message):
        """Start a new run with this config (the failed run's, with a suggested fix), then watch it."""

        def __init__(self, config: Config, label: str, preset: str | None):
            super().__init__()
            self.config = config
            self.label = label
            self.preset = preset
    BINDINGS = [
        Binding("s", "stop", "Stop run"),
        Binding("d,escape", "detach", "Detach"),
        Binding("x", "toggle_axis", "Steps/epochs"),
        Binding("m", "cycle_mode", "Smoothed/raw"),
        Binding("f", "relaunch_fix", "Relaunch with fix"),
    ]

    def __init__(self, run: RunDir):
        super().__init__()
        self.run = run
        self.run_tail = RunTail(run.events_path)
        self.log_tail = LogTail(run.log_path)
        self.x_axis = "step"
        self.mode = CURVE_MODES[0]
        self.loaded = False
        self._plots_stale = False
        self._plotted_at = 0.0

    @property
    def history(self) -> RunHistory:
        return self.run_tail.history

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.run.run_id, id="live-title")
        with Horizontal(id="live-progress"):
            yield ProgressBar(total=1, show_eta=False, id="progress-bar")  # no pulsing while loading
            yield Static("", id="progress-text")
        yield Static("", id="live-alert")
        with Horizontal(id="live-main"):
            with Vertical(id="live-curves"):
                yield LossPlot(id="loss-plot")
                yield LearningRatePlot(id="lr-plot")
            with VerticalScroll(id="live-side"):
                yield Static("", id="live-stats")
                yield Vertical(id="gpu-panels")
                yield HostPanel(id="host-panel")
        yield Log(id="worker-log", max_lines=500)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#live-title", Static).update(f"{self.run.run_id} · reading events…")
        self.query_one("#live-alert", Static).display = False
        self.replay()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def replay(self) -> None:
        """Read the whole history off the event loop; the screen follows the file from then on."""
        self.run_tail.replay()
        lines = self.log_tail.poll()
        self.app.call_from_thread(self._replayed, lines)

    def _replayed(self, log_lines: list[str]) -> None:
        self.loaded = True
        self.query_one(Log).write_lines(log_lines)
        self.show_numbers()
        self.draw_curves()
        self.set_interval(POLL_S, self.poll)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.notify(f"could not read {self.run.events_path}: {event.worker.error}", severity="error")

    def poll(self) -> None:
        """Pick up new events and log lines; redraw the numbers now and the curves when due."""
        events = self.run_tail.poll()
        lines = self.log_tail.poll()
        if lines:
            self.query_one(Log).write_lines(lines)
        self.show_numbers()
        self._plots_stale = self._plots_stale or bool(events)
        if self._plots_stale and time.monotonic() - self._plotted_at >= REDRAW_S:
            self.draw_curves()

    def draw_curves(self) -> None:
        self.query_one(LossPlot).show(self.history, self.x_axis, self.mode)
        self.query_one(LearningRatePlot).show(self.history, self.x_axis)
        self._plots_stale = False
        self._plotted_at = time.monotonic()

    def show_numbers(self) -> None:
        history = self.history
        state = self.run.effective_status()
        status = self.run.read_status()
        title = Text(f"{self.run.run_id}  ")
        title.append_text(run_status(state, "● "))
        title.append(f"   preset {status.get('preset') or '-'} · {status.get('base_model', '')}", style="dim")
        self.query_one("#live-title", Static).update(title)
        self._show_progress(history, state)
        self._show_alert(history)
        self.query_one("#live-stats", Static).update(stats_table(history))
        self._show_gpus(history)

    def _show_progress(self, history: RunHistory, state: str) -> None:
        last = history.steps.last
        total = history.total_steps
        bar = self.query_one(ProgressBar)
        if total:
            bar.update(total=total, progress=last.step if last else 0)
        epochs = history.started.num_epochs if history.started else None
        now = time.time() if state in ("starting", "running") else (history.last_t or time.time())
        parts = [f"step {last.step if last else 0}/{total or '?'}"]
        if last is not None:
            parts.append(f"epoch {last.epoch:.2f}/{epochs:g}" if epochs else f"epoch {last.epoch:.2f}")
        parts.append(f"elapsed {format_duration(history.elapsed(now))}")
        parts.append(f"ETA {format_duration(history.eta())}" if state == "running" else state)
        self.query_one("#progress-text", Static).update("  ·  ".join(parts))

    def _show_alert(self, history: RunHistory) -> None:
        alert = self.query_one("#live-alert", Static)
        text = Text()
        for error in history.errors[-1:]:
            text.append(f"error ({error.kind}): {error.message}", style="bold red")
            if error.memory:
                text.append(f"\n  memory at the time: {memory_line(error.memory)}", style="red")
            for hint in error.hints:
                text.append(f"\n  - {hint}", style="red")
            if error.suggestions:
                text.append("\n  press f to relaunch as a new run with the first change", style="bold")
        finished = history.finished
        if finished is not None:
            style = "bold green" if finished.status == "completed" else "bold yellow"
            text.append(("\n" if text else "") + f"{finished.status} at step {finished.final_step}", style=style)
            if finished.adapter:
                text.append(f" · adapter: {finished.adapter}", style="dim")
            for sample in history.samples:
                text.append(f"\n> {sample.prompt}\n  base: {sample.base}\n  fine-tuned: {sample.tuned}")
        alert.update(text)
        alert.display = bool(text)

    def _show_gpus(self, history: RunHistory) -> None:
        container = self.query_one("#gpu-panels", Vertical)
        panels = {panel.index: panel for panel in container.query(GpuPanel)}
        for index in sorted(history.gpus):
            if index not in panels:
                panels[index] = GpuPanel(index)
                container.mount(panels[index])
                self.call_after_refresh(panels[index].show, history.gpus[index])
            else:
                panels[index].show(history.gpus[index])
        reason = next((log.message for log in reversed(history.logs) if log.message.startswith(NO_GPU_PREFIX)),
                      None)
        self.query_one(HostPanel).show(history.host, reason if not history.gpus else None)

    def action_stop(self) -> None:
        if self.run.effective_status() not in ("starting", "running"):
            self.notify(f"the run is not running ({self.run.effective_status()})", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                asked = self.run.stop()
                self.notify("stopping after the current step (a checkpoint is saved)" if asked
                            else "the worker had already ended")

        self.app.push_screen(ConfirmScreen(f"Stop run {self.run.run_id}?\nIt saves a checkpoint at the next step "
                                           "boundary.", yes_label="Stop"), answered)

    def action_detach(self) -> None:
        if self.run.effective_status() in ("starting", "running"):
            self.notify(f"detached: {self.run.run_id} keeps running; attach again from the runs list")
        self.dismiss()

    def action_relaunch_fix(self) -> None:
        """A new run: this run's config with the top suggested change of its last error, started and opened."""
        fix = next((e.suggestions[0] for e in reversed(self.history.errors) if e.suggestions), None)
        if fix is None:
            self.notify("no suggested change: the run has no error with a fix", severity="warning")
            return
        changes = fix["set"]
        preset = self.run.read_status().get("preset")
        try:
            config = (ConfigBuilder().add_file(self.run.config_path)
                      .add_dict(nest({tuple(k.split(".")): v for k, v in changes.items()}), "the suggested fix")
                      .build())
        except TunedeckError as exc:
            self.notify(exc.one_line(), title="not relaunched", severity="error")
            return
        self.notify("starting a new run with " + ", ".join(f"{k}={v}" for k, v in changes.items()))
        self.post_message(self.LaunchRun(config, f"{preset or 'run'}-fix", preset))

    def action_toggle_axis(self) -> None:
        self.x_axis = "epoch" if self.x_axis == "step" else "step"
        self.draw_curves()

    def action_cycle_mode(self) -> None:
        self.mode = CURVE_MODES[(CURVE_MODES.index(self.mode) + 1) % len(CURVE_MODES)]
        self.draw_curves()
