"""The training job (`python -m tunedeck.core.worker train RUN_DIR`): one process, or one rank of a launch job."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tunedeck.core.config import Config
from tunedeck.core.errors import TunedeckError
from tunedeck.core.errors.classify import classify, disk_full_error, is_disk_full
from tunedeck.core.hardware.monitor import gpu_sampling
from tunedeck.core.jobs.runner import Job, run_job
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import Error, EventWriter, RunFinished
from tunedeck.core.training.checkpoints import check_complete, checkpoint_dirs, folder_size, verify_files
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
    job = Job(run, events.emit, finished_at_last_step, boundary="step", owns_process=not launched)

    def train(cancel) -> RunFinished:
        with gpu_sampling(events.emit):
            return run_training(run, events, cancel, resume=resume)

    return run_job(job, train,
                   final_status=lambda done: {"step": done.final_step, "adapter": done.adapter,
                                              "best_checkpoint": done.best_checkpoint},
                   describe=lambda exc: describe_failure(run, exc))


def finished_at_last_step(**fields) -> RunFinished:
    """The run's finished event; a failed or stopped one carries the last step the run finished."""
    callbacks = sys.modules.get("tunedeck.core.training.callbacks")
    done = callbacks.steps_done if callbacks is not None else None
    return RunFinished(**{"final_step": done or 0, **fields})


def describe_failure(run: RunDir, exc: BaseException) -> Error:
    """The error event of a failed training; a full disk first gives back what a partial checkpoint took."""
    config, step, longest = failure_context(run)
    if is_disk_full(exc):
        return disk_full_in_training(run, step) if is_main_process() else disk_full_error(run.checkpoints, step=step)
    return classify(exc, config, step, longest)


def disk_full_in_training(run: RunDir, step: int | None) -> Error:
    """Remove the checkpoints the full disk left unfinished (complete ones, and ones resume can recover, stay),
    then say where, how much is free and what a checkpoint needs."""
    removed, partial = [], 0
    for number, path in checkpoint_dirs(run.checkpoints):
        if check_complete(path) is None or verify_files(path, number) is None:
            break
        partial = max(partial, folder_size(path))
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    needs = run.read_status().get("checkpoint_bytes")
    hints = [f"the unfinished {', '.join(removed)} was removed; every complete checkpoint is intact"] if removed else []
    hints.append(f"then continue with: tunedeck resume {run.run_id}")
    what = f"writing {removed[0]}" if removed else "training"
    error = disk_full_error(run.checkpoints, what, needs or partial or None, step, hints)
    if needs is None and partial:
        error.message = error.message.replace("needs about", "needs more than")
    return error


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
