"""`tunedeck presets`: every preset and when to use it."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    presets = commands.add_parser("presets", help="list presets and when to use them")
    presets.set_defaults(func=presets_command)


def presets_command(args: argparse.Namespace, open_app=None) -> int:
    from tunedeck.core.config_files import preset_description, preset_names

    for name in preset_names():
        print(f"{name:12} {preset_description(name)}")
    return 0
