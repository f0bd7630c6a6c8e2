"""The `tunedeck` console script: top-level flags, the subcommands, and the app (an entry point) as the default."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from tunedeck.core.cli.commands import COMMAND_MODULES
from tunedeck.core.errors import TunedeckError
from tunedeck.core.errors.classify import DISK_FULL_ERRNOS, disk_full_error

AppOpener = Callable[[argparse.Namespace], int]
APP_ENTRY_POINT = "tunedeck.app"


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
    for name in COMMAND_MODULES:
        importlib.import_module(f"tunedeck.core.cli.commands.{name}").register(commands)
    return parser


def open_installed_app(args: argparse.Namespace) -> int:
    """Open the app registered under the `tunedeck.app` entry point (tunedeck.tui); it is imported only now."""
    from importlib.metadata import entry_points

    found = list(entry_points(group=APP_ENTRY_POINT))
    if not found:
        print("tunedeck: the app is not installed here; add --headless", file=sys.stderr)
        return 2
    return found[0].load()(args)


def main(argv: list[str] | None = None, open_app: AppOpener | None = None) -> int:
    """The console script; open_app replaces the installed app (tests)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args, open_app or open_installed_app)
    except TunedeckError as exc:
        print(f"tunedeck: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.filename is None and exc.errno not in DISK_FULL_ERRNOS:
            raise
        print(f"tunedeck: {os_error_line(exc)}", file=sys.stderr)
        return 2


def os_error_line(exc: OSError) -> str:
    """A file system refusal as one line: the file, what went wrong and, for a full disk, how much is free."""
    if exc.errno in DISK_FULL_ERRNOS:
        folder = Path(exc.filename).parent if exc.filename else None
        return disk_full_error(folder).message + " (free some space there, or use --runs-dir on a larger disk)"
    return f"{exc.filename}: {exc.strerror or exc}"


def dispatch(args: argparse.Namespace, open_app: AppOpener) -> int:
    if getattr(args, "func", None) is not None:
        return args.func(args, open_app)
    if args.headless:
        from tunedeck.core.cli.commands.train import launch_headless

        return launch_headless(args.runs_dir, args.preset, [Path(p) for p in args.config], args.overrides)
    return open_app(args)


if __name__ == "__main__":
    sys.exit(main())
