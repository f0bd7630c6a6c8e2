"""`tunedeck --preset NAME --headless` and `tunedeck train CONFIG`: create a run, start it, follow it."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunedeck.core.cli.commands import add_runs_dir


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train from a full config file, headless")
    train.add_argument("config_file", type=Path)
    add_runs_dir(train)
    train.add_argument("--set", action="append", default=argparse.SUPPRESS, dest="overrides",
                       metavar="KEY=VALUE", help="override one value (repeatable)")
    train.set_defaults(func=run_train_command)


def run_train_command(args: argparse.Namespace, open_app=None) -> int:
    return launch_headless(args.runs_dir, args.preset, [*map(Path, args.config), args.config_file],
                           args.overrides)


def launch_headless(runs_root: Path, preset: str | None, files: list[Path], overrides: list[str]) -> int:
    """Validate the config, create the run, start its worker detached and follow it here."""
    from tunedeck.core.cli.follow import follow_run
    from tunedeck.core.config_files import load_config
    from tunedeck.core.jobs.runs import create_run, start_worker
    from tunedeck.core.training.preflight import preflight

    config = load_config(preset=preset, files=files, overrides=overrides)
    preflight(config)
    label = preset or (files[-1].stem if files else "default")
    run = create_run(runs_root, config, label, preset=preset)
    proc = start_worker(run)
    print(f"run {run.run_id} started (pid {proc.pid}) in {run.path}")
    print(f"it keeps running if this terminal closes; follow it again with: tunedeck attach {run.run_id} "
          f"--headless --runs-dir {runs_root}")
    return follow_run(run, proc)
