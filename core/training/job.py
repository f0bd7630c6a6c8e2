"""The training job (`python -m tunedeck.core.worker train RUN_DIR`): one process, or one rank of a launch job."""

from __future__ import annotations

import sys
from pathlib import Path

from tunedeck.core.config import Config
from tunedeck.core.errors import TunedeckError
from tunedeck.core.errors.classify import classify
from tunedeck.core.hardware.monitor import gpu_sampling
from tunedeck.core.jobs.runner import Job, run_job
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import EventWriter, RunFinished
from tunedeck.core.training.distributed import RankEvents, die_with_parent, is_main_process, under_launcher
from tunedeck.core.training.launch import needs_launch, run_launch
from tunedeck.core.training.recipe import run_training


def run_train_job(run_path: Path, resume: bool = False) -> int:
    """Train a run; with several GPUs (or DeepSpeed) the launch job starts this once per rank instead."""
    if not under_launcher() and needs_launch(RunDir(run_path).load_config()):
        return run_launch(run_path, resume=resume)
    return run_train(run_path, resume=resume)


def run_train(run_path: Path, resume: bool = False) -> int:
    """Train in this process. Under a launcher the launch job holds the lock and the pid; rank 0 alone writes
    status.json and the run's events (other ranks add their errors and warnings)."""
    run = RunDir(run_path)
    launched = under_launcher()
    if launched:
        die_with_parent()
    if not is_main_process():
        run = run.read_only()
    events = RankEvents(EventWriter(run.events_path))
    job = Job(run, events.emit, RunFinished, boundary="step", owns_process=not launched)

    def train(cancel) -> RunFinished:
        with gpu_sampling(events.emit):
            return run_training(run, events, cancel, resume=resume)

    return run_job(job, train,
                   final_status=lambda done: {"step": done.final_step, "adapter": done.adapter,
                                              "best_checkpoint": done.best_checkpoint},
                   describe=lambda exc: classify(exc, *failure_context(run)))


def failure_context(run: RunDir) -> tuple[Config | None, int | None, int | None]:
    """The run's config, the step in progress and the longest sample, for the error event."""
    step = None
    callbacks = sys.modules.get("tunedeck.core.training.callbacks")  # loaded once training began; never load it here
    if callbacks is not None:
        step = callbacks.step_in_progress
    try:
        config = run.load_config()
    except TunedeckError:
        config = None
    return config, step, run.read_status().get("longest_sample")
