"""Worker entry point: `python -m tunedeck.core.worker MODE ...`; a table from each mode to the job that runs it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from tunedeck.core.chat.worker_loop import serve as serve_chat
from tunedeck.core.errors import TunedeckError
from tunedeck.core.estimate.probe import probe_main
from tunedeck.core.evaluate.job import run_eval_job
from tunedeck.core.export.job import run_export_job
from tunedeck.core.inspect.service import main as inspect_main
from tunedeck.core.jobs.process import quiet_libraries, reserve_stdout
from tunedeck.core.training.job import run_train_job


def _chat(argv: list[str]) -> int:
    out = reserve_stdout()
    quiet_libraries()
    return serve_chat(argv, out)


# Jobs on a run folder: (parsed arguments, the machine stdout) -> exit code. They report through events.jsonl;
# the probe prints its JSON result on the machine stdout.
FOLDER_JOBS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "train": lambda args, out: run_train_job(args.run_dir, resume=args.resume),
    "export": lambda args, out: run_export_job(args.run_dir),
    "eval": lambda args, out: run_eval_job(args.run_dir),
    "probe": lambda args, out: probe_main(args.run_dir, out),
}
# Long-lived workers that parse their own arguments and speak JSON lines on stdin/stdout (core/inspect/, core/chat/).
LINE_JOBS: dict[str, Callable[[list[str]], int]] = {"inspect": inspect_main, "chat": _chat}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tunedeck.core.worker",
                                     description="Run one tunedeck job for a run directory; "
                                     "`chat MODEL_OR_RUN --help` for the chat worker.")
    parser.add_argument("mode", choices=list(FOLDER_JOBS))
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in LINE_JOBS:
        return LINE_JOBS[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    machine = reserve_stdout()  # stray prints go to stderr (worker.log)
    quiet_libraries()
    if not (args.run_dir / "config.yaml").is_file():
        print(f"{args.run_dir}: not a run directory (no config.yaml)", file=sys.stderr)
        return 2
    try:
        return FOLDER_JOBS[args.mode](args, machine)
    except TunedeckError as exc:  # before the job began: e.g. another worker holds the folder
        print(exc.one_line(), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
