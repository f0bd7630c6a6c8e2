"""Worker entry point: `python -m tunedeck.core.worker train RUN_DIR` (or `chat MODEL`); runs a job, reports events."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path

from tunedeck.core.config import Config
from tunedeck.core.errors import TunedeckError
from tunedeck.core.errors.classify import comm_error, is_comm_failure, is_out_of_memory, oom_error
from tunedeck.core.hardware.monitor import gpu_sampling
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import Error, EventWriter, Log, RunFinished


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # TRL still uses transformers' renamed `gradient_checkpointing` names: warnings that only bury the log lines a
    # user reads in the live view.
    warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing` is deprecated", category=FutureWarning)


def reserve_stdout():
    """Keep the real stdout for machine output and send everything else printed there to stderr."""
    sys.stdout.flush()
    machine = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return machine


def _install_stop_handlers(cancel: threading.Event, events: EventWriter, run: RunDir) -> None:
    """First SIGTERM/SIGINT: stop at the next step boundary with a checkpoint. Second: stop now."""

    def handle(signum, frame):  # noqa: ARG001
        if cancel.is_set():
            events.emit(RunFinished(status="stopped", message="stopped at once by a second signal"))
            run.update_status(status="stopped")
            os._exit(130)
        cancel.set()
        events.emit(Log(level="info", message=f"received {signal.Signals(signum).name}: stopping after this step"))

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def classify(exc: BaseException, config: Config | None = None, step: int | None = None,
             longest: int | None = None) -> Error:
    """The error event for an exception: its kind, a readable message and what to try.

    Out-of-memory errors carry the step, the memory at the time and the estimator's ranked changes (given the
    run's config); NCCL/RCCL failures are crashes with what to check.
    """
    if isinstance(exc, TunedeckError):
        return Error(kind=exc.kind, message=exc.one_line(), hints=[exc.hint] if exc.hint else [], step=step)
    if is_out_of_memory(exc):
        return oom_error(exc, config, step, longest)
    if is_comm_failure(exc):
        return comm_error(exc, step)
    text = str(exc)
    first = text.splitlines()[0] if text else ""
    return Error(kind="crash", message=f"{type(exc).__name__}: {first}".rstrip(": "),
                 hints=["the full traceback is in worker.log"], step=step)


def _failure_context(run: RunDir) -> tuple[Config | None, int | None, int | None]:
    """The run's config, the step in progress and the longest sample, for the error event."""
    step = None
    events_module = sys.modules.get("tunedeck.core.training.callbacks")
    if events_module is not None:
        step = events_module.step_in_progress
    try:
        config = run.load_config()
    except TunedeckError:
        config = None
    return config, step, run.read_status().get("longest_sample")


def run_train(run_path: Path, resume: bool = False) -> int:
    from tunedeck.core.training.distributed import RankEvents, die_with_parent, is_main_process, under_launcher
    from tunedeck.core.training.recipe import run_training

    run = RunDir(run_path)
    launched = under_launcher()  # one rank of a multi-GPU run: the launch job owns the pid, rank 0 the status
    if launched:
        die_with_parent()
    events = RankEvents(EventWriter(run.events_path))
    if not is_main_process():
        run = _ReadOnlyStatus(run.path)
    cancel = threading.Event()
    _install_stop_handlers(cancel, events, run)
    run.update_status(status="running", **({} if launched else {"pid": os.getpid()}))
    try:
        with gpu_sampling(events.emit):
            finished = run_training(run, events, cancel, resume=resume)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the event stream
        if isinstance(exc, KeyboardInterrupt | SystemExit) and cancel.is_set():
            finished = RunFinished(status="stopped", message="stopped")
        else:
            traceback.print_exc(file=sys.stderr)
            error = events.emit(classify(exc, *_failure_context(run)))
            events.emit(RunFinished(status="failed", message=error.message))
            run.update_status(status="failed", error=error.message, error_kind=error.kind)
            return 2 if isinstance(exc, TunedeckError) else 1
    events.emit(finished)
    run.update_status(status=finished.status, step=finished.final_step, adapter=finished.adapter,
                      best_checkpoint=finished.best_checkpoint)
    return 0


class _ReadOnlyStatus(RunDir):
    """The run folder as ranks other than 0 see it: they never write status.json."""

    def update_status(self, **fields):
        return self.read_status()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["inspect"]:  # a dataset, not a run folder: its own arguments and a JSON-lines conversation
        from tunedeck.core.inspect.service import main as inspect_main

        return inspect_main(argv[1:])
    if argv[:1] == ["chat"]:  # a long-lived worker speaking JSON lines on stdin/stdout (core/chat/)
        out = reserve_stdout()
        _quiet_libraries()
        from tunedeck.core.chat.worker_loop import serve

        return serve(argv[1:], out)
    parser = argparse.ArgumentParser(prog="python -m tunedeck.core.worker",
                                     description="Run one tunedeck job for a run directory; "
                                     "`chat MODEL_OR_RUN --help` for the chat worker.")
    parser.add_argument("mode", choices=["train", "export", "probe", "eval"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    args = parser.parse_args(argv)
    machine = reserve_stdout()  # jobs report through events.jsonl (probe: JSON on stdout); stray prints -> stderr
    _quiet_libraries()
    if not (args.run_dir / "config.yaml").is_file():
        print(f"{args.run_dir}: not a run directory (no config.yaml)", file=sys.stderr)
        return 2
    if args.mode == "probe":
        from tunedeck.core.estimate.probe import probe_main

        return probe_main(args.run_dir, machine)
    if args.mode == "export":
        from tunedeck.core.export.job import run_export_job

        return run_export_job(args.run_dir)
    if args.mode == "eval":
        from tunedeck.core.evaluate.job import run_eval_job

        return run_eval_job(args.run_dir)
    from tunedeck.core.training.distributed import under_launcher

    if not under_launcher():
        from tunedeck.core.training.launch import needs_launch, run_launch

        if needs_launch(RunDir(args.run_dir).load_config()):  # several GPUs: accelerate starts one worker each
            return run_launch(args.run_dir, resume=args.resume)
    return run_train(args.run_dir, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
