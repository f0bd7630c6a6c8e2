"""Worker entry point: `python -m tunedeck.core.worker train RUN_DIR` (or `chat MODEL`); runs a job, reports events."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from tunedeck.core.errors import TunedeckError
from tunedeck.core.events import Error, EventWriter, Log, RunFinished
from tunedeck.core.monitor import gpu_sampling
from tunedeck.core.runs import RunDir

OOM_HINTS = [
    "lower train.batch_size (e.g. 4 -> 2) and raise gradient_accumulation_steps to keep the effective batch",
    "halve data.cutoff_len (e.g. 4096 -> 2048)",
    "turn on train.gradient_checkpointing",
    "with several GPUs, use distributed.deepspeed_stage 2 with offload_optimizer: true",
]


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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


def classify(exc: BaseException) -> Error:
    """The error event for an exception: its kind, a readable message and what to try."""
    if isinstance(exc, TunedeckError):
        return Error(kind=exc.kind, message=exc.one_line(), hints=[exc.hint] if exc.hint else [])
    text = str(exc)
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text.lower():
        return Error(kind="oom", message=f"out of memory: {text.splitlines()[0] if text else type(exc).__name__}",
                     hints=OOM_HINTS)
    first = text.splitlines()[0] if text else ""
    return Error(kind="crash", message=f"{type(exc).__name__}: {first}".rstrip(": "),
                 hints=["the full traceback is in worker.log"])


def run_train(run_path: Path, resume: bool = False) -> int:
    from tunedeck.core.train import run_training

    run = RunDir(run_path)
    events = EventWriter(run.events_path)
    cancel = threading.Event()
    _install_stop_handlers(cancel, events, run)
    run.update_status(status="running", pid=os.getpid())
    try:
        with gpu_sampling(events.emit):
            finished = run_training(run, events, cancel, resume=resume)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the event stream
        if isinstance(exc, KeyboardInterrupt | SystemExit) and cancel.is_set():
            finished = RunFinished(status="stopped", message="stopped")
        else:
            traceback.print_exc(file=sys.stderr)
            error = events.emit(classify(exc))
            events.emit(RunFinished(status="failed", message=error.message))
            run.update_status(status="failed", error=error.message, error_kind=error.kind)
            return 2 if isinstance(exc, TunedeckError) else 1
    events.emit(finished)
    run.update_status(status=finished.status, step=finished.final_step, adapter=finished.adapter,
                      best_checkpoint=finished.best_checkpoint)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["chat"]:  # a long-lived worker speaking JSON lines on stdin/stdout (core/chat/)
        out = reserve_stdout()
        _quiet_libraries()
        from tunedeck.core.chat.worker_loop import serve

        return serve(argv[1:], out)
    parser = argparse.ArgumentParser(prog="python -m tunedeck.core.worker",
                                     description="Run one tunedeck job for a run directory; "
                                     "`chat MODEL_OR_RUN --help` for the chat worker.")
    parser.add_argument("mode", choices=["train", "export"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    args = parser.parse_args(argv)
    reserve_stdout()  # the train job reports through events.jsonl; stray prints must not reach stdout
    _quiet_libraries()
    if not (args.run_dir / "config.yaml").is_file():
        print(f"{args.run_dir}: not a run directory (no config.yaml)", file=sys.stderr)
        return 2
    if args.mode == "export":
        from tunedeck.core.export.job import run_export_job

        return run_export_job(args.run_dir)
    return run_train(args.run_dir, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
