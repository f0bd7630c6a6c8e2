"""The runs screen, driven through Textual's Pilot against run folders on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from textual.widgets import DataTable

from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.live import LiveScreen
from tunedeck.tui.screens.runs import RunsScreen

from .tui_support import Posted, make_run, make_services, screen_text, wait_for


def rows(app) -> dict[str, list[str]]:
    table = app.screen.query_one(DataTable)
    return {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)] for i in range(table.row_count)}


async def test_runs_screen_lists_each_run_with_its_status(tmp_path: Path):
    make_run(tmp_path, "run-a", status="completed", step=30, total_steps=30, loss=0.6146, best_eval_loss=0.66,
             base_model="builtin:smollm2-135m-instruct", preset="cpu-demo", created_at=1.0)
    make_run(tmp_path, "run-b", status="running", pid=os.getpid(), step=3, total_steps=90, created_at=2.0)
    make_run(tmp_path, "run-c", status="running", pid=2**22 + 12345, created_at=3.0)  # its worker is gone
    make_run(tmp_path, "run-d", status="stopped", step=12, total_steps=90, created_at=4.0)
    app = TunedeckApp(runs_root=tmp_path)
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.pause()
        shown = rows(app)
        assert shown["run-a"][1:5] == ["completed", "30/30", "0.6146", "0.6600"]
        assert shown["run-b"][1:3] == ["running", "3/90"]
        assert shown["run-c"][1] == "failed"
        assert shown["run-d"][1:3] == ["stopped", "12/90"]
        footer = screen_text(app).splitlines()[-1]
        for label in ("Attach", "New run", "Stop", "Delete", "Quit"):
            assert label in footer
        make_run(tmp_path, "run-e", status="created", created_at=5.0)
        await pilot.press("r")
        assert rows(app)["run-e"][1] == "created"
        await pilot.press("q")
    assert not app.is_running


async def test_delete_asks_first_and_refuses_a_live_run(tmp_path: Path):
    make_run(tmp_path, "old", status="completed", created_at=1.0)
    make_run(tmp_path, "live", status="running", pid=os.getpid(), created_at=2.0)
    app = TunedeckApp(runs_root=tmp_path)
    posted = Posted()
    async with app.run_test(size=(160, 30), message_hook=posted) as pilot:
        await pilot.pause()
        await pilot.press("d")  # cursor on "old"
        assert "Delete run old" in screen_text(app)
        await pilot.press("n")
        assert (tmp_path / "old").is_dir()
        await pilot.press("d", "y")
        assert await wait_for(pilot, lambda: list(rows(app)) == ["live"])
        assert not (tmp_path / "old").exists()
        await pilot.press("d", "y")
        assert await wait_for(pilot, lambda: posted.said("stop it first"))
        assert (tmp_path / "live").is_dir()


async def test_stop_asks_then_signals_the_worker_session(tmp_path: Path):
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        make_run(tmp_path, "run", status="running", pid=worker.pid, created_at=1.0)
        app = TunedeckApp(runs_root=tmp_path)
        async with app.run_test(size=(160, 30)) as pilot:
            await pilot.pause()
            await pilot.press("s")
            assert "Stop run run?" in screen_text(app)
            await pilot.press("y")
            assert worker.wait(timeout=10) == -signal.SIGTERM
    finally:
        worker.kill()


async def test_enter_attaches_and_detach_comes_back(tmp_path: Path):
    make_run(tmp_path, "run-a", status="completed", created_at=1.0)
    app = TunedeckApp(runs_root=tmp_path)
    posted = Posted()
    async with app.run_test(size=(160, 40), message_hook=posted) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen) and app.screen.loaded)
        assert [m.run_id for m in posted.of(RunsScreen.OpenRun)] == ["run-a"]  # asked the app, which opened it
        await pilot.press("d")
        assert await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))


class ResumeRecorder:
    def __init__(self, runs_root: Path):
        self.runs_root = runs_root
        self.resumed: list[str] = []

    def launch(self, config, label, preset):  # not used here
        raise AssertionError("no launch expected")

    def resume(self, run) -> None:
        from tunedeck.core.jobs.runs import resume_run

        if run.effective_status() == "completed":
            resume_run(run)  # the real refusal
        self.resumed.append(run.run_id)


async def test_resume_and_export_keys_open_their_screens(tmp_path: Path):
    from tunedeck.tui.screens.export import ExportScreen

    make_run(tmp_path, "halted", status="stopped", step=4, total_steps=10, created_at=1.0)
    make_run(tmp_path, "finished", status="completed", step=10, total_steps=10, created_at=2.0)
    recorder = ResumeRecorder(tmp_path)
    app = TunedeckApp(services=make_services(tmp_path, launcher=recorder))
    posted = Posted()
    async with app.run_test(size=(160, 30), message_hook=posted) as pilot:
        await pilot.pause()
        footer = screen_text(app).splitlines()[-1]
        assert "Resume" in footer and "Export" in footer
        await pilot.press("u")  # cursor on "halted"
        assert await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen))
        assert recorder.resumed == ["halted"]
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.press("down", "u")
        assert await wait_for(pilot, lambda: posted.said("already completed"))
        assert recorder.resumed == ["halted"] and isinstance(app.screen, RunsScreen)
        assert [m.run_id for m in posted.of(RunsScreen.ResumeRun)] == ["halted", "finished"]
        await pilot.press("e")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        assert "Export finished" in screen_text(app)
        assert [m.run_id for m in posted.of(RunsScreen.OpenExport)] == ["finished"]
