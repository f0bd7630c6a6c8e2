"""The bridge from the Hugging Face Trainer to tunedeck's event stream, status file and stop requests."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import Checkpoint, Eval, EventWriter, Log, Step
from tunedeck.core.training.checkpoints import folder_size, hold_for_test, mark_complete
from tunedeck.core.training.distributed import agreed_stop, is_main_process
from tunedeck.core.training.rotation import rotate

STATUS_EVERY_S = 5.0
# The optimizer step being computed in this worker process (one run per process), for the error event, and the
# last one finished, for the failed run's final step.
step_in_progress: int | None = None
steps_done: int | None = None


class EventCallback(TrainerCallback):
    """Turns Trainer logs into step / eval / checkpoint events and keeps status.json current.

    In a multi-GPU run every rank has one; only rank 0's writes anything (one `step` per optimizer step).
    It also rotates checkpoints (the Trainer's own rotation is off): only once the newest is complete, keeping
    at most `keep`, the best and any a reader has pinned.
    """

    def __init__(self, run: RunDir, events: EventWriter, samples_per_step: int, on_train_begin=None,
                 keep: int | None = None):
        self.main = is_main_process()
        self.run = run
        self.keep = keep
        self.events = events
        self.samples_per_step = samples_per_step
        self._on_train_begin = on_train_begin
        self._last_time: float | None = None
        self._last_tokens: float | None = None
        self._last_step = 0
        self._last_status = 0.0
        self.last_eval_loss: float | None = None
        self.last_loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time = time.perf_counter()
        self._last_step = state.global_step
        self._last_tokens = 0.0
        if self._on_train_begin and self.main:
            self._on_train_begin(state)

    def on_step_begin(self, args, state, control, **kwargs):
        global step_in_progress
        step_in_progress = state.global_step + 1

    def on_step_end(self, args, state, control, **kwargs):
        global steps_done
        steps_done = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.main:
            return
        logs = logs or {}
        if "loss" in logs and "train_runtime" not in logs:
            self._emit_step(state, logs)
        if "eval_loss" in logs:
            loss = float(logs["eval_loss"])
            self.last_eval_loss = loss
            self.events.emit(Eval(step=state.global_step, epoch=_round(state.epoch), eval_loss=loss,
                                  perplexity=math.exp(min(loss, 50.0))))
            best = state.best_metric if state.best_metric is not None else loss
            self.run.update_status(best_eval_loss=min(best, loss))

    def _emit_step(self, state, logs: dict[str, Any]) -> None:
        now = time.perf_counter()
        elapsed = max(now - (self._last_time or now), 1e-9)
        steps = max(state.global_step - self._last_step, 1)
        tokens = logs.get("num_tokens")
        tokens_per_s = None
        if tokens is not None and self._last_tokens is not None:
            tokens_per_s = (float(tokens) - self._last_tokens) / elapsed
        self._last_tokens = float(tokens) if tokens is not None else None
        self._last_time, self._last_step = now, state.global_step
        self.last_loss = float(logs["loss"])
        grad_norm = logs.get("grad_norm")
        self.events.emit(Step(
            step=state.global_step, epoch=_round(state.epoch), loss=self.last_loss,
            lr=float(logs.get("learning_rate", 0.0)),
            grad_norm=float(grad_norm) if grad_norm is not None and math.isfinite(grad_norm) else None,
            tokens_per_s=_round(tokens_per_s), samples_per_s=_round(steps * self.samples_per_step / elapsed),
            total_steps=state.max_steps,
        ))
        if now - self._last_status >= STATUS_EVERY_S or state.global_step >= state.max_steps:
            self._last_status = now
            self.run.update_status(step=state.global_step, total_steps=state.max_steps, loss=self.last_loss,
                                   epoch=_round(state.epoch))

    def on_save(self, args, state, control, **kwargs):
        if not self.main:
            return
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if args.should_save:  # the main process wrote it; from now on it counts for resume
            hold_for_test("checkpoint-written", state.global_step)
            mark_complete(path, state.global_step)
            rotate(path.parent, self.keep, state.best_model_checkpoint)
        self.events.emit(Checkpoint(step=state.global_step, path=str(path), eval_loss=self.last_eval_loss))
        self.run.update_status(last_checkpoint=str(path), best_checkpoint=state.best_model_checkpoint,
                               checkpoint_bytes=folder_size(path))


class StopCallback(TrainerCallback):
    """Ends training at the next step boundary once `cancel` is set, saving a checkpoint first."""

    def __init__(self, cancel: threading.Event, events: EventWriter):
        self.cancel = cancel
        self.events = events
        self._announced = False

    def on_step_end(self, args, state, control, **kwargs):
        if agreed_stop(self.cancel.is_set(), args.device):  # all ranks stop at the same step
            if not self._announced:
                self._announced = True
                self.events.emit(Log(level="info", message=f"stop requested: saving at step {state.global_step}"))
            control.should_training_stop = True
            control.should_save = True  # always: a stopped run must be resumable from this step
        return control


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)
