"""The `tunedeck` console script: the core command line, with the app as its default command."""

from __future__ import annotations

import argparse
import sys


def open_app(args: argparse.Namespace) -> int:
    from tunedeck.tui.app import TunedeckApp

    app = TunedeckApp(runs_root=args.runs_dir, preset=getattr(args, "preset", None),
                      attach=getattr(args, "run_id", None))
    app.run()
    return app.return_code or 0


def main() -> None:
    from tunedeck.core.cli.main import main as cli_main

    sys.exit(cli_main(sys.argv[1:], open_app=open_app))


if __name__ == "__main__":
    main()
