"""Jobs' events as terminal text: training, export and evaluation printers over one redrawn status line."""

from __future__ import annotations

import json
import shutil
from typing import Any, TextIO

from tunedeck.core.display import format_duration
from tunedeck.core.stream.events import (
    Error,
    Eval,
    EvalFinished,
    EvalProgress,
    EvalStarted,
    Event,
    ExportCheck,
    ExportFinished,
    ExportProgress,
    ExportStarted,
    ExportStep,
    Log,
    RunFinished,
    RunStarted,
    Sample,
    Step,
)

REDRAW, CLEAR, KEEP = "redraw", "clear", "keep"  # what printing a line does to a shown status line
MARKS = {True: "ok  ", False: "FAIL", None: "skip"}


class LiveLine:
    """A status line redrawn in place on a terminal (`\\r\\x1b[K`), with ordinary lines printed above it.

    After a printed line a shown status line is drawn again below it (REDRAW), replaced by it (CLEAR) or left
    above it as a finished line (KEEP). Off a terminal there is no status line: status() prints a plain line.
    """

    def __init__(self, out: TextIO, live: bool | None = None, after_print: str = REDRAW):
        self.out = out
        self.live = out.isatty() if live is None else live
        self.after_print = after_print
        self.shown: str | None = None

    @staticmethod
    def width() -> int:
        return shutil.get_terminal_size((100, 20)).columns

    def status(self, text: str) -> None:
        """The status line on a terminal, a printed line elsewhere."""
        if self.live:
            self.draw(text)
        else:
            self.print(text)

    def draw(self, text: str) -> None:
        """Redraw the status line (on a terminal only), cut to the terminal's width."""
        if not self.live:
            return
        self.out.write("\r\x1b[K" + text[: self.width() - 1])
        self.out.flush()
        self.shown = text

    def print(self, text: str) -> None:
        shown, self.shown = self.shown, None
        if shown is not None:
            self.out.write("\n" if self.after_print == KEEP else "\r\x1b[K")
        self.out.write(text + "\n")
        self.out.flush()
        if shown is not None and self.after_print == REDRAW:
            self.draw(shown)

    def end(self) -> None:
        """Leave a shown status line as a finished line."""
        if self.shown is not None:
            self.out.write("\n")
            self.out.flush()
            self.shown = None


def print_error(line: LiveLine, event: Error) -> None:
    line.print(f"error ({event.kind}): {event.message}")
    for hint in event.hints:
        line.print(f"  - {hint}")


class TrainingPrinter:
    """A run's events as text; keeps what the closing summary needs (first and last loss, timings, samples)."""

    def __init__(self, out: TextIO, live: bool | None = None):
        self.line = LiveLine(out, live, after_print=REDRAW)
        self.started_at: float | None = None
        self.first_step: Step | None = None
        self.last_step: Step | None = None
        self.total_steps = 0
        self.samples: list[Sample] = []
        self.finished: RunFinished | None = None
        self.errors: list[Error] = []
        self.token_rates: list[float] = []

    def handle(self, event: Event) -> None:
        self.started_at = self.started_at or event.t
        if isinstance(event, RunStarted):
            self.finished = None  # a resumed run starts a new segment of the same stream
            self.total_steps = event.total_steps
            if event.resumed_from_step:
                self.print(f"resumed at step {event.resumed_from_step}")
            hw = event.hardware
            where = ", ".join(g["name"] for g in hw.get("gpus", [])) or f"CPU ({hw.get('cpu_cores', '?')} cores)"
            self.print(f"training {event.train_samples} samples for {event.total_steps} steps on {where}, "
                       f"{event.precision}")
        elif isinstance(event, Step):
            self.first_step = self.first_step or event
            self.last_step = event
            self.total_steps = event.total_steps or self.total_steps
            if event.tokens_per_s:
                self.token_rates.append(event.tokens_per_s)
            self.line.status(self._bar(event) if self.line.live else self._step_text(event))
        elif isinstance(event, Eval):
            self.print(f"eval  step {event.step}  epoch {event.epoch:.2f}  eval_loss {event.eval_loss:.4f}  "
                       f"perplexity {event.perplexity:.2f}")
        elif isinstance(event, Log):
            self.print(f"{event.level}: {event.message}" if event.level != "info" else event.message)
        elif isinstance(event, Error):
            self.errors.append(event)
            print_error(self.line, event)
        elif isinstance(event, Sample):
            self.samples.append(event)
        elif isinstance(event, RunFinished):
            self.finished = event

    def _step_text(self, step: Step) -> str:
        total = step.total_steps or self.total_steps or 0
        rate = f"{step.tokens_per_s:,.0f} tok/s" if step.tokens_per_s else "- tok/s"
        return (f"step {step.step}/{total}  epoch {step.epoch:.2f}  loss {step.loss:.4f}  lr {step.lr:.2e}  "
                f"{rate}  elapsed {format_duration(self.elapsed(step.t))}  ETA {format_duration(self.eta(step))}")

    def _bar(self, step: Step) -> str:
        total = step.total_steps or self.total_steps or 1
        text = self._step_text(step)
        bar_width = max(10, min(30, self.line.width() - len(text) - 8))
        filled = int(bar_width * min(step.step / total, 1.0))
        return f"[{'#' * filled}{'.' * (bar_width - filled)}] {text}"

    def print(self, text: str) -> None:
        self.line.print(text)

    def elapsed(self, now: float) -> float | None:
        return now - self.started_at if self.started_at else None

    def eta(self, step: Step) -> float | None:
        total = step.total_steps or self.total_steps
        if not total or self.first_step is None or step.step <= self.first_step.step:
            return None
        per_step = (step.t - self.first_step.t) / (step.step - self.first_step.step)
        return per_step * (total - step.step)

    def summary(self) -> None:
        self.line.end()
        done = self.finished
        if done is None:
            return
        took = format_duration(self.elapsed(done.t))
        losses = ""
        if self.first_step and self.last_step:
            losses = f", loss {self.first_step.loss:.4f} -> {self.last_step.loss:.4f}"
        rate = ""
        if self.token_rates:
            rate = f", {sum(self.token_rates) / len(self.token_rates):,.0f} tok/s"
        self.print(f"{done.status}: {done.final_step} steps in {took}{losses}{rate}")
        if done.adapter:
            self.print(f"adapter: {done.adapter}")
        if done.best_checkpoint:
            self.print(f"best checkpoint: {done.best_checkpoint}")
        for sample in self.samples:
            self.print(f"\n> {sample.prompt}\n  base model : {sample.base}\n  fine-tuned : {sample.tuned}")


class ExportPrinter:
    """An export's events as text: one line per finished step and check, the running step as the status line."""

    def __init__(self, out: TextIO, live: bool | None = None):
        self.line = LiveLine(out, live, after_print=CLEAR)
        self.total = 0
        self.done = 0
        self.finished: ExportFinished | None = None
        self.failed_checks: list[ExportCheck] = []

    def handle(self, event: Event) -> None:
        if isinstance(event, ExportStarted):
            self.total = len(event.steps)
            self.print(f"exporting run {event.run_id} from {event.checkpoint}: {self.total} steps")
        elif isinstance(event, ExportStep):
            if event.state in ("done", "skipped", "failed"):
                self.done += event.state != "failed"
                took = f" ({event.seconds:.1f} s)" if event.seconds is not None and event.state == "done" else ""
                detail = f": {event.message}" if event.message else ""
                self.print(f"[{self.done}/{self.total}] {event.step} {event.state}{took}{detail}")
            else:
                self.line.draw(f"{event.step} ...")
        elif isinstance(event, ExportProgress):
            self.line.draw(f"{event.step} {event.fraction * 100:.0f}% {event.message}")
        elif isinstance(event, ExportCheck):
            if event.passed is False:
                self.failed_checks.append(event)
            self.print(f"  check {MARKS[event.passed]} {event.name:9} {event.target:9} {event.message}")
        elif isinstance(event, Log) and event.level != "info":
            self.print(f"{event.level}: {event.message}")
        elif isinstance(event, Error):
            print_error(self.line, event)
        elif isinstance(event, ExportFinished):
            self.finished = event

    def print(self, text: str) -> None:
        self.line.print(text)

    def summary(self) -> None:
        done = self.finished
        if done is None:
            return
        if done.report:
            try:
                report = json.loads(open(done.report, encoding="utf-8").read())
            except (OSError, json.JSONDecodeError):
                report = None
            if report:
                for line in report_table(report):
                    self.print(line)
        self.print(f"{done.status}: {done.message}")


def report_table(report: dict[str, Any]) -> list[str]:
    """The report's models side by side: size, perplexity, speed and the greedy answer."""
    lines = [f"\n{'model':8} {'size':>10} {'perplexity':>11} {'vs merged':>9} {'eval tok/s':>10} "
             f"{'gen tok/s':>9}  answer to {report.get('prompt', '')!r}"]
    for row in report.get("models", []):
        ratio = row.get("ratio_to_merged")
        lines.append(
            f"{row['name']:8} {row['size_bytes'] / 2**20:>8.1f}Mi {_num(row.get('perplexity'), 4):>11} "
            f"{f'{(ratio - 1) * 100:+.1f}%' if ratio else '':>9} {_num(row.get('tokens_per_s'), 1):>10} "
            f"{_num(row.get('gen_tokens_per_s'), 1):>9}  {row.get('answer', '')!r} [{row.get('ended_on')}]")
    for row in report.get("models", []):
        if row.get("modelfile"):
            lines.append(f"{row['name']}: {row['path']}\n{' ' * len(row['name'])}  {row['modelfile']}")
    return lines


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class EvalPrinter:
    """Evaluation events as text: the phase's progress as the status line (one line per batch off a terminal)."""

    def __init__(self, out: TextIO, live: bool | None = None):
        self.line = LiveLine(out, live, after_print=KEEP)
        self.phases: list[str] = []

    def handle(self, event: Event) -> None:
        if isinstance(event, EvalStarted):
            self.phases = event.phases
            self.print(f"evaluating {event.rows} rows from {event.source}")
        elif isinstance(event, EvalProgress):
            position = self.phases.index(event.phase) + 1 if event.phase in self.phases else 0
            self.line.status(f"[{position}/{len(self.phases)}] {event.phase}: {event.done}/{event.total} rows")
        elif isinstance(event, Log):
            self.print(event.message if event.level == "info" else f"{event.level}: {event.message}")
        elif isinstance(event, Error):
            print_error(self.line, event)
        elif isinstance(event, EvalFinished) and event.status == "completed":
            self.print(event.message)

    def print(self, text: str) -> None:
        self.line.print(text)

    def end_line(self) -> None:
        self.line.end()
