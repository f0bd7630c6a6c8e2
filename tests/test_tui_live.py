"""The live training view against recorded event files: numbers, GPU panels, curves, and events appended live."""

from __future__ import annotations

import json
import os
from pathlib import Path

from textual.widgets import Log

from tunedeck.core.stream.events import Error, Eval, EventWriter, Gpu, Host, RunFinished, RunStarted, Step
from tunedeck.core.stream.events import Log as LogEvent
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.live import LiveScreen

from .tui_support import Posted, make_run, screen_text, wait_for

GIB = 1 << 30


def recorded_run(root: Path, steps: int = 12, **status) -> tuple[Path, EventWriter]:
    path = make_run(root, "run-1", status="running", pid=os.getpid(), preset="mi50-2x", created_at=1.0, **status)
    (path / "worker.log").write_text("worker: loading Qwen2.5-7B\nworker: training\n")
    writer = EventWriter(path / "events.jsonl")
    writer.emit(RunStarted(run_id="run-1", config={}, total_steps=100, num_epochs=5.0, t=1000.0))
    for step in range(1, steps + 1):
        writer.emit(Step(step=step, epoch=step / 20, loss=2.0 - step / 100, lr=5e-5, grad_norm=0.75,
                         tokens_per_s=812.0, samples_per_s=3.2, total_steps=100, t=1000.0 + 10 * step))
        for index in (0, 1):
            writer.emit(Gpu(index=index, name="AMD Instinct MI50", mem_used=(27 + index) * GIB, mem_total=32 * GIB,
                            util=97.0, temp=70.0 + index, power=212.0, t=1000.0 + 10 * step))
        writer.emit(Host(ram_used=40 * GIB, ram_total=128 * GIB, t=1000.0 + 10 * step))
    writer.emit(Eval(step=10, epoch=0.5, eval_loss=1.4321, perplexity=4.19, t=1100.0))
    return path, writer


async def open_live(app, pilot) -> LiveScreen:
    assert await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen) and app.screen.loaded)
    await pilot.pause()
    return app.screen


async def test_live_view_shows_the_numbers_and_gpu_memory_from_the_file(tmp_path: Path):
    recorded_run(tmp_path)
    app = TunedeckApp(runs_root=tmp_path, attach="run-1")
    async with app.run_test(size=(170, 50)) as pilot:
        await open_live(app, pilot)
        text = screen_text(app)
        assert "● running" in text and "preset mi50-2x" in text
        assert "step 12/100" in text and "epoch 0.60/5" in text and "ETA 14:40" in text
        assert "1.8800" in text  # the last loss, exact
        assert "1.4321 @ step 10" in text  # best eval
        assert "5.00e-05" in text and "0.750" in text and "812" in text
        assert "GPU 0" in text and "GPU 1" in text and text.count("AMD Instinct MI50") == 2
        assert "27.0/32.0 GiB 84%" in text and "28.0/32.0 GiB 88%" in text
        assert "util 97%  71°C  212 W" in text
        assert "40.0/128.0 GiB" in text  # host RAM
        assert "loss · 12 steps (1-12)" in text
        assert "worker: training" in "\n".join(app.screen.query_one(Log).lines)
        footer = text.splitlines()[-1]
        for label in ("Stop run", "Detach", "Steps/epochs", "Smoothed/raw"):
            assert label in footer


async def test_events_appended_to_the_file_appear_on_screen(tmp_path: Path):
    path, writer = recorded_run(tmp_path)
    app = TunedeckApp(runs_root=tmp_path, attach="run-1")
    async with app.run_test(size=(170, 50)) as pilot:
        await open_live(app, pilot)
        writer.emit(Step(step=13, epoch=0.65, loss=0.4242, lr=4e-5, total_steps=100, t=1130.0))
        writer.emit(Gpu(index=1, name="AMD Instinct MI50", mem_used=31 * GIB, mem_total=32 * GIB, t=1130.0))
        with open(path / "worker.log", "a") as log:
            log.write("worker: step 13 done\n")
        assert await wait_for(pilot, lambda: "0.4242" in screen_text(app))
        assert await wait_for(pilot, lambda: "loss · 13 steps (1-13)" in screen_text(app))
        text = screen_text(app)
        assert "step 13/100" in text and "31.0/32.0 GiB 97%" in text
        assert "worker: step 13 done" in app.screen.query_one(Log).lines
        writer.emit(Error(kind="oom", message="out of memory: HIP out of memory", hints=["halve data.cutoff_len"]))
        writer.emit(RunFinished(status="failed", final_step=13, t=1140.0))
        assert await wait_for(pilot, lambda: "failed at step 13" in screen_text(app))
        assert "error (oom): out of memory: HIP out of memory" in screen_text(app)
        assert "halve data.cutoff_len" in screen_text(app)


async def test_keys_switch_the_x_axis_and_the_curve_mode(tmp_path: Path):
    recorded_run(tmp_path)
    app = TunedeckApp(runs_root=tmp_path, attach="run-1")
    async with app.run_test(size=(170, 50)) as pilot:
        await open_live(app, pilot)
        await pilot.press("x", "m")
        assert await wait_for(pilot, lambda: "x: epochs · smoothed" in screen_text(app))
        await pilot.press("m")
        assert await wait_for(pilot, lambda: "x: epochs · raw" in screen_text(app))


async def test_without_gpu_data_the_view_says_why_and_shows_host_ram(tmp_path: Path):
    path = make_run(tmp_path, "cpu-run", status="completed", created_at=1.0)
    writer = EventWriter(path / "events.jsonl")
    writer.emit(LogEvent(level="info", message="no GPU data: nvidia-ml-py: NVML Shared Library Not Found"))
    writer.emit(Host(ram_used=3 * GIB, ram_total=24 * GIB))
    app = TunedeckApp(runs_root=tmp_path, attach="cpu-run")
    async with app.run_test(size=(170, 50)) as pilot:
        await open_live(app, pilot)
        text = screen_text(app)
        assert "no GPU data: nvidia-ml-py: NVML Shared Library Not" in text  # wrapped in the side panel
        assert "3.0/24.0 GiB" in text and "GPU 0" not in text
        assert "loss · waiting for the first step" in text


async def test_a_version_1_run_shows_host_ram_as_before(tmp_path: Path):
    """Version 1 of the stream wrote host RAM as a `gpu` reading with index -1 where no GPU could be read."""
    path = make_run(tmp_path, "old-run", status="completed", created_at=1.0)
    lines = [{"v": 1, "t": 1.0, "type": "log", "level": "info", "message": "no GPU data: amdsmi not installed"},
             {"v": 1, "t": 2.0, "type": "step", "step": 1, "epoch": 0.1, "loss": 2.5, "lr": 1e-3},
             {"v": 1, "t": 2.0, "type": "gpu", "index": -1, "name": "host", "mem_used": 0, "mem_total": 0,
              "util": None, "temp": None, "power": None, "host_ram_used": 3 * GIB, "host_ram_total": 24 * GIB,
              "node": None}]
    (path / "events.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    app = TunedeckApp(runs_root=tmp_path, attach="old-run")
    async with app.run_test(size=(170, 50)) as pilot:
        await open_live(app, pilot)
        text = screen_text(app)
        assert "no GPU data: amdsmi not installed" in text
        assert "3.0/24.0 GiB" in text and "GPU -1" not in text and "GPU 0" not in text
        assert "2.5000" in text


async def test_attaching_to_an_unknown_run_is_a_notification(tmp_path: Path):
    app = TunedeckApp(runs_root=tmp_path, attach="nope")
    posted = Posted()
    async with app.run_test(size=(120, 30), message_hook=posted) as pilot:
        assert await wait_for(pilot, lambda: posted.said("no run 'nope'"))
        assert not isinstance(app.screen, LiveScreen)
        [note] = posted.notes
        assert note.title == "cannot open run" and note.severity == "error"
