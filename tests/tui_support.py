"""Helpers for Pilot tests: what the screen shows as text, and waiting for the app to catch up."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tunedeck.core.jobs.runs import create_run


def screen_text(app) -> str:
    """The active screen rendered to plain text, as a terminal would show it."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def wait_for(pilot, condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    waited = 0.0
    while not condition():
        if waited >= timeout_s:
            return False
        await pilot.pause(0.05)
        waited += 0.05
    return True


def make_run(root: Path, run_id: str, **status) -> Path:
    path = root / run_id
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("{}\n", encoding="utf-8")
    (path / "status.json").write_text(json.dumps(status), encoding="utf-8")
    return path


class RecordingLauncher:
    """Creates the run folder like the real launcher, but records the launch instead of starting training."""

    def __init__(self, runs_root: Path):
        self.runs_root = runs_root
        self.launched = []

    def launch(self, config, label, preset):
        self.launched.append((config, label, preset))
        return create_run(self.runs_root, config, label, preset=preset)

    def resume(self, run):
        raise AssertionError("not expected")
