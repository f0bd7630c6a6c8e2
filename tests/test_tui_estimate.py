"""The memory estimate on the form follows the values; the live view relaunches a failed run with its fix (f)."""

from __future__ import annotations

import os
from pathlib import Path

from textual.widgets import Input

from tunedeck.core.config_files import load_config
from tunedeck.core.jobs.runs import create_run, list_runs
from tunedeck.core.stream.events import Error, EventWriter, RunFinished, RunStarted, Step
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.config_form import ConfigFormScreen
from tunedeck.tui.screens.live import LiveScreen
from tunedeck.tui.widgets.estimate_panel import EstimatePanel

from .tui_support import Posted, RecordingLauncher, make_services, screen_text, wait_for


def panel_text(app) -> str:
    panels = app.screen.query(EstimatePanel)
    return str(panels.first().content) if panels else ""


async def test_the_form_estimate_follows_the_values(tmp_path: Path):
    app = TunedeckApp(services=make_services(tmp_path, launcher=RecordingLauncher(tmp_path)))
    async with app.run_test(size=(200, 50)) as pilot:
        app.push_screen(ConfigFormScreen("mi50-2x"))
        assert await wait_for(pilot, lambda: "total" in panel_text(app))
        text = panel_text(app)
        assert "2 x AMD Instinct MI50 32GB (32.0 GiB)" in text and "ZeRO-2" in text and "batch 4 x 4096" in text
        assert "will not fit" in text and "cheapest fix: --set" in text
        assert "weights 14.19" in text  # Qwen2.5-7B in 16-bit, replicated under ZeRO-2
        form = app.screen
        for key, value in (("train.batch_size", "1"), ("data.cutoff_len", "1024")):
            form.query_one(f"#field-{key.replace('.', '-')}").query_one(Input).value = value
        assert await wait_for(pilot, lambda: "batch 1 x 1024" in panel_text(app))
        assert "fits" in panel_text(app) and "will not fit" not in panel_text(app)
        assert "cheapest fix" not in panel_text(app)
        form.query_one("#field-train-batch_size").query_one(Input).value = "x"
        assert await wait_for(pilot, lambda: "estimate unavailable" in panel_text(app))
        assert "train.batch_size" in panel_text(app)


def failed_run(root: Path) -> Path:
    config = load_config(preset="cpu-demo")
    run = create_run(root, config, "cpu-demo", preset="cpu-demo")
    run.update_status(status="failed", pid=os.getpid())
    writer = EventWriter(run.events_path)
    writer.emit(RunStarted(run_id=run.run_id, config={}, total_steps=30, num_epochs=3.0))
    writer.emit(Step(step=1, epoch=0.1, loss=2.5, lr=1e-3, total_steps=30))
    writer.emit(Error(kind="oom", message="out of memory at step 2: DefaultCPUAllocator: can't allocate memory",
                      hints=["--set train.batch_size=4 --set train.gradient_accumulation_steps=2: ..."], step=2,
                      memory={"host_rss": 3 << 30, "host_peak_rss": 4 << 30, "host_total": 24 << 30},
                      suggestions=[{"set": {"train.batch_size": 4, "train.gradient_accumulation_steps": 2},
                                    "why": "batch 8 -> 4", "estimate_gib": 2.5},
                                   {"set": {"train.gradient_checkpointing": True}, "why": "ckpt",
                                    "estimate_gib": 2.0}]))
    writer.emit(RunFinished(status="failed", final_step=1))
    return run.path


async def test_f_relaunches_the_failed_run_with_the_top_fix(tmp_path: Path):
    path = failed_run(tmp_path)
    launcher = RecordingLauncher(tmp_path)
    app = TunedeckApp(attach=path.name, services=make_services(tmp_path, launcher=launcher))
    posted = Posted()
    async with app.run_test(size=(170, 50), message_hook=posted) as pilot:
        assert await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen) and app.screen.loaded)
        await pilot.pause()
        text = screen_text(app)
        assert "error (oom): out of memory at step 2" in text
        assert "memory at the time: host RSS 3.00 GiB (peak 4.00)" in text
        assert "press f to relaunch" in text and "Relaunch with fix" in text.splitlines()[-1]
        await pilot.press("f")
        assert await wait_for(pilot, lambda: len(launcher.launched) == 1)
        [asked] = posted.of(LiveScreen.LaunchRun)  # the live view asked the app, which launched
        assert (asked.label, asked.preset) == ("cpu-demo-fix", "cpu-demo") and launcher.launched[0][0] is asked.config
        assert posted.said("starting a new run with train.batch_size=4, train.gradient_accumulation_steps=2")
        config, label, preset = launcher.launched[0]
        assert (config.train.batch_size, config.train.gradient_accumulation_steps) == (4, 2)
        assert config.train.gradient_checkpointing is False  # only the top fix
        assert config.data.cutoff_len == 256 and preset == "cpu-demo"  # the rest as the failed run had it
        new_id = next(r.run_id for r in list_runs(tmp_path) if r.run_id != path.name)
        assert await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen) and app.screen.run.run_id == new_id)


async def test_f_without_a_fix_says_so(tmp_path: Path):
    config = load_config(preset="cpu-demo")
    run = create_run(tmp_path, config, "cpu-demo")
    EventWriter(run.events_path).emit(RunStarted(run_id=run.run_id, config={}, total_steps=30))
    launcher = RecordingLauncher(tmp_path)
    app = TunedeckApp(attach=run.run_id, services=make_services(tmp_path, launcher=launcher))
    posted = Posted()
    async with app.run_test(size=(170, 50), message_hook=posted) as pilot:
        assert await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen) and app.screen.loaded)
        await pilot.press("f")
        assert await wait_for(pilot, lambda: posted.said("no suggested change"))
        assert not launcher.launched and not posted.of(LiveScreen.LaunchRun)
