"""The `tunedeck` command line: headless runs and run management; the TUI is opened through a hook."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tunedeck.core.errors import TunedeckError

AppOpener = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunedeck",
        description="Fine-tune LLMs with LoRA / QLoRA on your own GPU box. Without a command, opens the app.",
    )
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="runs root (default: ./runs)")
    parser.add_argument("--preset", help="preset to start from (see `tunedeck presets`)")
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="YAML config overlay, applied after the preset (repeatable)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="override one value, e.g. --set train.learning_rate=1e-4 (repeatable)")
    parser.add_argument("--headless", action="store_true",
                        help="train without the app: create a run, start it and print its progress")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="train from a full config file, headless")
    train.add_argument("config_file", type=Path)
    _add_common(train)

    attach = commands.add_parser("attach", help="follow a run (in the app, or printed with --headless)")
    attach.add_argument("run_id")
    attach.add_argument("--headless", action="store_true", help="print progress instead of opening the app")
    attach.add_argument("--runs-dir", type=Path, default=argparse.SUPPRESS)

    stop = commands.add_parser("stop", help="stop a run at its next step boundary, with a checkpoint")
    stop.add_argument("run_id")
    stop.add_argument("--now", action="store_true", help="kill at once, without a checkpoint")
    stop.add_argument("--runs-dir", type=Path, default=argparse.SUPPRESS)

    runs = commands.add_parser("runs", help="list runs and their status")
    runs.add_argument("--runs-dir", type=Path, default=argparse.SUPPRESS)

    commands.add_parser("presets", help="list presets and when to use them")
    return parser


def _add_common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--runs-dir", type=Path, default=argparse.SUPPRESS)
    sub.add_argument("--set", action="append", default=argparse.SUPPRESS, dest="overrides", metavar="KEY=VALUE")


def launch_headless(runs_root: Path, preset: str | None, files: list[Path], overrides: list[str]) -> int:
    """Validate the config, create the run, start its worker detached and follow it here."""
    from tunedeck.core.config_files import load_config
    from tunedeck.core.progress import follow_run
    from tunedeck.core.runs import create_run, start_worker

    config = load_config(preset=preset, files=files, overrides=overrides)
    preflight(config)
    label = preset or (files[-1].stem if files else "default")
    run = create_run(runs_root, config, label, preset=preset)
    proc = start_worker(run)
    print(f"run {run.run_id} started (pid {proc.pid}) in {run.path}")
    print(f"it keeps running if this terminal closes; follow it again with: tunedeck attach {run.run_id} "
          f"--headless --runs-dir {runs_root}")
    return follow_run(run, proc)


def preflight(config) -> None:
    """Refuse what can never train before a run directory exists: unreadable data, missing models."""
    from tunedeck.core.data.loading import load_data
    from tunedeck.core.models import check_model_available

    check_model_available(config.model.name_or_path)
    load_data(config.data)


def cmd_runs(runs_root: Path) -> int:
    from tunedeck.core.runs import list_runs

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


def cmd_presets() -> int:
    from tunedeck.core.config_files import preset_description, preset_names

    for name in preset_names():
        print(f"{name:12} {preset_description(name)}")
    return 0


def main(argv: list[str] | None = None, open_app: AppOpener | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args, open_app)
    except TunedeckError as exc:
        print(f"tunedeck: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def dispatch(args: argparse.Namespace, open_app: AppOpener | None) -> int:
    from tunedeck.core.runs import find_run, stop_worker

    runs_root: Path = args.runs_dir
    if args.command == "train":
        return launch_headless(runs_root, args.preset, [*map(Path, args.config), args.config_file],
                               args.overrides)
    if args.command == "attach":
        run = find_run(runs_root, args.run_id)
        if args.headless or open_app is None:
            from tunedeck.core.progress import follow_run

            return follow_run(run)
        return open_app(args)
    if args.command == "stop":
        run = find_run(runs_root, args.run_id)
        if not stop_worker(run, now=args.now):
            print(f"run {run.run_id} is not running ({run.effective_status()})")
            return 1
        print(f"asked run {run.run_id} to stop" + (" at once" if args.now else " after its current step"))
        time.sleep(0.1)
        return 0
    if args.command == "runs":
        return cmd_runs(runs_root)
    if args.command == "presets":
        return cmd_presets()
    if args.headless:
        return launch_headless(runs_root, args.preset, [Path(p) for p in args.config], args.overrides)
    if open_app is None:
        print("tunedeck: the app is not available here; add --headless", file=sys.stderr)
        return 2
    return open_app(args)


if __name__ == "__main__":
    sys.exit(main())
