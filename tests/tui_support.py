"""Helpers for Pilot tests: what the screen shows as text, which messages were posted, and waiting for a condition."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.cells import cell_len, set_cell_size
from textual.message import Message
from textual.notifications import Notification, Notify

from tunedeck.core.jobs.runs import create_run
from tunedeck.tui.services import Services

M = TypeVar("M", bound=Message)
CELL_WIDTH = 12.2  # the width of one terminal cell in Textual's SVG screenshots
SVG_TEXT = re.compile(r'<text [^>]*? x="([\d.]+)"[^>]*? clip-path="url\(#[\w-]+-line-(\d+)\)">([^<]*)</text>')


def screen_text(app) -> str:
    """The screen as a terminal shows it, in plain text: the rows of the app's own SVG screenshot."""
    rows: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for x, line, content in SVG_TEXT.findall(app.export_screenshot(simplify=True)):
        if "&" in content:
            content = html.unescape(content.replace("&#160;", " "))
        rows[int(line)].append((round(float(x) / CELL_WIDTH), content.rstrip("\n")))
    width, height = app.size
    lines = []
    for y in range(height):
        parts, at = [], 0
        for column, piece in sorted(rows[y]):
            parts.append(" " * max(0, column - at) + piece)
            at = max(at, column) + cell_len(piece)
        lines.append(set_cell_size("".join(parts), width).rstrip())  # what lies past the edge is clipped
    return "\n".join(lines)


class Posted:
    """Every message the app dispatched while it ran (pass it as run_test's message_hook)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def of(self, kind: type[M]) -> list[M]:
        """The messages of one class, each once (a bubbling message is dispatched at every level)."""
        seen: dict[int, M] = {}
        for message in self.messages:
            if type(message) is kind:
                seen.setdefault(id(message), message)
        return list(seen.values())

    @property
    def notes(self) -> list[Notification]:
        """The notifications shown, oldest first."""
        return [message.notification for message in self.of(Notify)]

    def said(self, text: str) -> bool:
        """Whether a notification contained `text`."""
        return any(text in note.message for note in self.notes)


async def wait_for(pilot, condition: Callable[[], Any], timeout_s: float = 10.0) -> bool:
    """Let the app run until `condition()` is true; False if it is not within `timeout_s` of pauses."""
    waited = 0.0
    while not condition():
        if waited >= timeout_s:
            return False
        await pilot.pause(0.05)
        waited += 0.05
    return True


def make_services(runs_root: Path, **collaborators: Any) -> Services:
    """The app's real services on `runs_root`, with the given collaborators (recording, replaying) in place."""
    return dataclasses.replace(Services.default(runs_root), **collaborators)


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
