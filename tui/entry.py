"""The app as the command line opens it: the `tunedeck.app` entry point that `tunedeck` (core.cli) calls."""

from __future__ import annotations

import argparse

from tunedeck.tui.app import TunedeckApp


def open_app(args: argparse.Namespace) -> int:
    app = TunedeckApp(runs_root=args.runs_dir, preset=getattr(args, "preset", None),
                      attach=getattr(args, "run_id", None))
    app.run()
    return app.return_code or 0
