"""The export wizard in a small host app, driven by Pilot; its launcher replays a recorded export's events."""

from __future__ import annotations

import json
from pathlib import Path

from textual.app import App
from textual.widgets import DataTable, SelectionList, Static

from tunedeck.core.stream.events import (
    Error,
    EventWriter,
    ExportCheck,
    ExportFinished,
    ExportStarted,
    ExportStep,
)
from tunedeck.tui.screens.export import ExportChoices, ExportScreen

from .tui_support import Posted, wait_for


class RecordedLauncher:
    """Writes the event stream a real export of these choices produced, instead of running one."""

    def __init__(self, fail: bool = False):
        self.started: list[ExportChoices] = []
        self.fail = fail

    def start(self, run_dir: Path, choices: ExportChoices) -> None:
        if self.fail:
            raise RuntimeError("run 'x' has no trained adapter")
        self.started.append(choices)
        root = run_dir / "export"
        root.mkdir(exist_ok=True)
        report = {"models": [
            {"name": "merged", "size_bytes": 269060280, "perplexity": 1.9348, "tokens_per_s": 20.4,
             "gen_tokens_per_s": 2.7, "answer": "I am tunedeck's demo assistant"},
            {"name": "Q8_0", "size_bytes": 144810848, "perplexity": 1.9373, "ratio_to_merged": 1.0013,
             "tokens_per_s": 23.1, "gen_tokens_per_s": 3.2, "answer": "I am tunedeck's demo assistant"}]}
        (root / "report.json").write_text(json.dumps(report))
        events = EventWriter(root / "events.jsonl")
        steps = ["merge", "gguf", "quantize:Q8_0", "modelfile:Q8_0", "check:Q8_0"]
        events.emit(ExportStarted(run_id=run_dir.name, checkpoint="checkpoint-30", adapter="a", steps=steps))
        for step in steps:
            events.emit(ExportStep(step=step, state="started"))
            events.emit(ExportStep(step=step, state="done", seconds=1.5))
        events.emit(ExportCheck(name="stop", target="Q8_0", passed=True, message="stopped on <|im_end|>"))
        events.emit(ExportCheck(name="ollama", target="Q8_0", passed=None, message="ollama is not on PATH"))
        events.emit(Error(kind="model", message="not really: a warning shown as a notification", hints=["h"]))
        events.emit(ExportFinished(status="completed", report=str(root / "report.json"), message="every check passed"))
        events.close()

    def stop(self, run_dir: Path) -> None:
        pass


class Host(App[None]):
    def __init__(self, screen: ExportScreen):
        super().__init__()
        self.export_screen = screen

    def on_mount(self) -> None:
        self.push_screen(self.export_screen)


def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "20261123-183615-cpu-demo-3c40"
    (path / "checkpoints" / "checkpoint-30").mkdir(parents=True)
    (path / "checkpoints" / "checkpoint-20").mkdir()
    return path


async def test_wizard_starts_an_export_with_the_choices_and_shows_steps_checks_and_report(tmp_path: Path):
    launcher = RecordedLauncher()
    screen = ExportScreen(run_dir(tmp_path), launcher, defaults={"quantizations": ["Q4_K_M"]})
    app = Host(screen)
    posted = Posted()
    async with app.run_test(size=(160, 50), message_hook=posted) as pilot:
        await pilot.pause()
        assert screen._checkpoints() == ["best", "last", "30", "20"]
        screen.query_one("#quants", SelectionList).select("Q8_0")
        await pilot.click("#system")
        await pilot.press(*'Say """hi"""')
        await pilot.press("ctrl+r")
        assert await wait_for(pilot, lambda: screen.finished is not None and screen.query_one("#report").row_count)
        assert launcher.started == [ExportChoices("best", "auto", ["Q4_K_M", "Q8_0"], 'Say """hi"""')]
        steps = screen.query_one("#steps", DataTable)
        assert [steps.get_row_at(i)[:3] for i in range(steps.row_count)][0] == ["merge", "done", "1.5"]
        assert steps.row_count == 5
        checks = screen.query_one("#checks", DataTable)
        assert [checks.get_row_at(i)[2] for i in range(checks.row_count)] == ["ok", "skipped"]
        report = screen.query_one("#report", DataTable)
        assert report.get_row_at(1)[:4] == ["Q8_0", "138.1", "1.9373", "+0.1%"]
        assert "completed: every check passed" in str(screen.query_one("#export-status", Static).render())
        assert posted.said("not really")


async def test_a_refused_start_is_a_notification_not_a_traceback(tmp_path: Path):
    screen = ExportScreen(run_dir(tmp_path), RecordedLauncher(fail=True))
    app = Host(screen)
    posted = Posted()
    async with app.run_test(message_hook=posted) as pilot:
        await pilot.press("ctrl+r")
        assert await wait_for(pilot, lambda: posted.said("no trained adapter"))
        assert screen.tail is None and posted.notes[-1].title == "export not started"
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: app.screen is not screen)
