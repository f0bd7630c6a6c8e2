"""`tunedeck runs | attach RUN | stop RUN`: list runs, follow one, stop one."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tunedeck.core.cli.commands import add_runs_dir
from tunedeck.core.cli.follow import follow_run
from tunedeck.core.jobs.runs import find_run, list_runs, resume_run


def register(commands: argparse._SubParsersAction) -> None:
    attach = commands.add_parser("attach", help="follow a run (in the app, or printed with --headless)")
    attach.add_argument("run_id")
    attach.add_argument("--headless", action="store_true", help="print progress instead of opening the app")
    add_runs_dir(attach)
    attach.set_defaults(func=attach_command)

    stop = commands.add_parser("stop", help="stop a run at its next step boundary, with a checkpoint")
    stop.add_argument("run_id")
    stop.add_argument("--now", action="store_true", help="kill at once, without a checkpoint")
    add_runs_dir(stop)
    stop.set_defaults(func=stop_command)

    resume = commands.add_parser("resume", help="continue a stopped or failed run from its newest checkpoint")
    resume.add_argument("run_id")
    resume.add_argument("--headless", action="store_true", help="print progress instead of opening the app")
    add_runs_dir(resume)
    resume.set_defaults(func=resume_command)

    runs = commands.add_parser("runs", help="list runs and their status")
    add_runs_dir(runs)
    runs.set_defaults(func=list_command)


def attach_command(args: argparse.Namespace, open_app=None) -> int:
    run = find_run(args.runs_dir, args.run_id)
    if args.headless or open_app is None:
        return follow_run(run)
    return open_app(args)


def resume_command(args: argparse.Namespace, open_app=None) -> int:
    run = find_run(args.runs_dir, args.run_id)
    proc = resume_run(run)
    print(f"run {run.run_id} resumed (pid {proc.pid})")
    if args.headless or open_app is None:
        return follow_run(run, proc, skip_history=True)
    return open_app(args)


def stop_command(args: argparse.Namespace, open_app=None) -> int:
    run = find_run(args.runs_dir, args.run_id)
    if not run.stop(now=args.now):
        print(f"run {run.run_id} is not running ({run.effective_status()})")
        return 1
    print(f"asked run {run.run_id} to stop" + (" at once" if args.now else " after its current step"))
    time.sleep(0.1)
    return 0


def list_command(args: argparse.Namespace, open_app=None) -> int:
    runs_root: Path = args.runs_dir
    runs = list_runs(runs_root)
    if not runs:
        print(f"no runs under {runs_root}")
        return 0
    print(f"{'run':44} {'status':10} {'step':>11} {'loss':>8}  base model")
    for run in runs:
        status = run.read_status()
        step = f"{status.get('step', 0)}/{status.get('total_steps', '?')}"
        loss = status.get("loss")
        print(f"{run.run_id:44} {run.effective_status():10} {step:>11} "
              f"{loss if loss is None else f'{loss:.4f}':>8}  {status.get('base_model', '')}")
    return 0
