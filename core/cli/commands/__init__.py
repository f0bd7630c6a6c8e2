"""Subcommands of `tunedeck`, one module per group; each module's register() adds its parsers."""

from __future__ import annotations

import argparse
from pathlib import Path

# Modules under tunedeck.core.cli.commands, in the order `tunedeck --help` lists them.
COMMAND_MODULES = ("train", "runs", "data", "export", "chat", "eval", "eval_compare", "estimate", "doctor",
                   "presets")


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    """--runs-dir after the subcommand too; the top-level default (./runs) applies when absent."""
    parser.add_argument("--runs-dir", type=Path, default=argparse.SUPPRESS, help="runs root (default: ./runs)")
