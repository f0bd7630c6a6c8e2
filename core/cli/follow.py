"""Follow a run's event stream on a terminal: a live progress line on a TTY, plain lines otherwise."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from typing import TextIO

from tunedeck.core.display import format_duration
from tunedeck.core.jobs.runs import RunDir, stop_worker
from tunedeck.core.stream.events import Error, Eval, Event, Log, RunFinished, RunStarted, Sample, Step
from tunedeck.core.stream.tail import EventTail

POLL_S = 0.25


class ProgressPrinter:
    """Renders events; keeps what the closing summary needs (first and last loss, timings, samples)."""

    def __init__(self, out: TextIO, live: bool):
        self.out = out
        self.live = live
        self.started_at: float | None = None
        self.first_step: Step | None = None
        self.last_step: Step | None = None
        self.total_steps = 0
        self.samples: list[Sample] = []
        self.finished: RunFinished | None = None
        self.errors: list[Error] = []
        self.token_rates: list[float] = []
        self._line_shown = False

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
            if self.live:
                self._draw(event)
            else:
                self.print(self._step_text(event))
        elif isinstance(event, Eval):
            self.print(f"eval  step {event.step}  epoch {event.epoch:.2f}  eval_loss {event.eval_loss:.4f}  "
                       f"perplexity {event.perplexity:.2f}")
        elif isinstance(event, Log):
            self.print(f"{event.level}: {event.message}" if event.level != "info" else event.message)
        elif isinstance(event, Error):
            self.errors.append(event)
            self.print(f"error ({event.kind}): {event.message}")
            for hint in event.hints:
                self.print(f"  - {hint}")
        elif isinstance(event, Sample):
            self.samples.append(event)
        elif isinstance(event, RunFinished):
            self.finished = event

    def _step_text(self, step: Step) -> str:
        total = step.total_steps or self.total_steps or 0
        rate = f"{step.tokens_per_s:,.0f} tok/s" if step.tokens_per_s else "- tok/s"
        return (f"step {step.step}/{total}  epoch {step.epoch:.2f}  loss {step.loss:.4f}  lr {step.lr:.2e}  "
                f"{rate}  elapsed {format_duration(self.elapsed(step.t))}  ETA {format_duration(self.eta(step))}")

    def _draw(self, step: Step) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        total = step.total_steps or self.total_steps or 1
        text = self._step_text(step)
        bar_width = max(10, min(30, width - len(text) - 8))
        filled = int(bar_width * min(step.step / total, 1.0))
        line = f"[{'#' * filled}{'.' * (bar_width - filled)}] {text}"
        self.out.write("\r\x1b[K" + line[: width - 1])
        self.out.flush()
        self._line_shown = True

    def print(self, text: str) -> None:
        if self._line_shown:
            self.out.write("\r\x1b[K")
        self.out.write(text + "\n")
        self.out.flush()
        if self._line_shown and self.last_step is not None:
            self._draw(self.last_step)

    def elapsed(self, now: float) -> float | None:
        return now - self.started_at if self.started_at else None

    def eta(self, step: Step) -> float | None:
        total = step.total_steps or self.total_steps
        if not total or self.first_step is None or step.step <= self.first_step.step:
            return None
        per_step = (step.t - self.first_step.t) / (step.step - self.first_step.step)
        return per_step * (total - step.step)

    def summary(self) -> None:
        if self._line_shown:
            self.out.write("\n")
            self._line_shown = False
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


def follow_run(run: RunDir, proc: subprocess.Popen | None = None, out: TextIO = sys.stdout,
               skip_history: bool = False) -> int:
    """Print a run's events until it finishes. Ctrl-C asks the worker to stop (twice: at once).

    skip_history follows only new events (a resumed run). Returns 0 when the run completed, 1 otherwise.
    """
    printer = ProgressPrinter(out, live=out.isatty())
    tail = EventTail(run.events_path)
    if skip_history:
        tail.skip_to_end()
    interrupts = 0
    while True:
        try:
            for event in tail.poll():
                printer.handle(event)
            if not _worker_alive(run, proc):  # finished or dead: read what it wrote last, then stop
                for event in tail.poll():
                    printer.handle(event)
                break
            time.sleep(POLL_S)
        except KeyboardInterrupt:
            interrupts += 1
            stop_worker(run, now=interrupts > 2, pid=proc.pid if proc is not None else None)
            printer.print("stopping after the current step (Ctrl-C again to stop at once)"
                          if interrupts == 1 else "stopping now")
    printer.summary()
    if printer.finished is None:
        code = proc.returncode if proc is not None else None
        printer.print(f"the worker ended without finishing (exit code {code}); see {run.log_path}")
        return 1
    return 0 if printer.finished.status == "completed" else 1


def _worker_alive(run: RunDir, proc: subprocess.Popen | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    return run.effective_status() in ("starting", "running")
