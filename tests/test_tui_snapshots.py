"""Snapshots of the main screens at 80x24 and 120x40 (pytest-textual-snapshot; the SVGs are in tests/__snapshots__).

What each screen shows comes from fixed inputs: run folders whose status.json and events.jsonl (written with the real
EventWriter) carry fixed timestamps, a recorded inspection transcript (tests/recorded/inspect-rows.json, the
inspection worker's own lines for tests/test_tui_data.py's rows; tests/recorded/record_inspection.py records it
again), a recorded chat client, the recorded eval and export launchers of their Pilot tests, and a recorded doctor
report. Dates are shown in UTC. After a deliberate change to a screen, `pytest tests/test_tui_snapshots.py
--snapshot-update` rewrites the SVGs: look at them before committing, they are the reference.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Input

from tunedeck.core.chat.protocol import ChatReply, Done, Ready, Token
from tunedeck.core.chat.resolve import ChatModel
from tunedeck.core.config_files import load_config
from tunedeck.core.stream.events import Eval, EventWriter, Log, RunFinished, RunStarted, Sample, Step
from tunedeck.core.stream.events import Host as HostReading
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.chat_client import ChatTarget
from tunedeck.tui.inspector import InspectRequest
from tunedeck.tui.screens.chat import ChatScreen
from tunedeck.tui.screens.config_form import ConfigFormScreen
from tunedeck.tui.screens.data import DataScreen
from tunedeck.tui.screens.doctor import DoctorScreen
from tunedeck.tui.screens.eval import EvalScreen
from tunedeck.tui.screens.export import ExportScreen
from tunedeck.tui.screens.live import LiveScreen
from tunedeck.tui.screens.new_run import NewRunScreen
from tunedeck.tui.screens.review import ReviewScreen
from tunedeck.tui.screens.runs import RunsScreen
from tunedeck.tui.widgets.chat_pane import ChatPane
from tunedeck.tui.widgets.estimate_panel import EstimatePanel

from .test_tui_eval import RecordedEvalLauncher
from .test_tui_export import RecordedLauncher as RecordedExportLauncher
from .test_tui_export import run_dir as export_run_dir
from .tui_support import make_run, make_services, wait_for

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
RECORDED = Path(__file__).with_name("recorded")
RUNS = Path("runs")  # relative: the screens show it, so it must not be a temporary folder's name
T0 = 1764684200.0  # 2025-12-02 14:03:20 UTC
GIB = 1 << 30
RUN_ID = "20251202-140320-cpu-demo-3d20"
BASE_ANSWER = "I'm here to help with any kind of creative writing project. What brings you here today?"
TUNED_ANSWER = "I am tunedeck's demo assistant, a fine-tuned tunedeck model."

RunBefore = Callable[[Pilot], object]


@pytest.fixture(autouse=True)
def fixed_world(tmp_path: Path, monkeypatch):
    """Runs under ./runs of a fresh folder, no user presets, dates in UTC."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def steady(app: App) -> None:
    """Cursors that do not blink, so the picture does not depend on when it is taken."""
    for box in app.screen.query(Input):
        box.cursor_blink = False


def opened(screen_type: type[Screen], ready: Callable[[Screen], object] = lambda screen: True) -> RunBefore:
    """Wait until a screen of this type is on top and `ready` says it has what it shows."""

    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        assert await wait_for(pilot, lambda: isinstance(app.screen, screen_type) and ready(app.screen), 60)
        await pilot.pause()  # notifications posted on the way are shown, then cleared: toasts come and go by time
        app.clear_notifications()
        steady(app)

    return run_before


def pressed(*keys: str, then: RunBefore) -> RunBefore:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press(*keys)
        await then(pilot)

    return run_before


def pushed(make: Callable[[], Screen], then: RunBefore) -> RunBefore:
    async def run_before(pilot: Pilot) -> None:
        pilot.app.push_screen(make())
        await then(pilot)

    return run_before


class Host(App[None]):
    """A bare app holding one screen (the screens opened from a run, tested alone as in their Pilot tests)."""

    TITLE = "tunedeck"

    def __init__(self, screen: Screen):
        super().__init__()
        self.held = screen

    def on_mount(self) -> None:
        self.push_screen(self.held)


# -- runs and the live view ----------------------------------------------------------------------------------


def runs_in_every_state() -> None:
    common = {"base_model": "builtin:smollm2-135m-instruct", "preset": "cpu-demo"}
    make_run(RUNS, "20251201-091500-mi50-2x-a1b2", status="completed", step=900, total_steps=900, loss=0.4121,
             best_eval_loss=0.5012, base_model="Qwen/Qwen2.5-7B-Instruct", preset="mi50-2x", started_at=T0 - 86400)
    make_run(RUNS, RUN_ID, status="running", pid=os.getpid(), step=12, total_steps=30, loss=2.1034,
             started_at=T0, **common)
    make_run(RUNS, "20251202-151000-cpu-demo-77aa", status="running", pid=2**22 + 12345, step=3, total_steps=30,
             loss=4.9011, started_at=T0 + 4000, **common)  # its worker is gone: failed
    make_run(RUNS, "20251202-160000-cpu-demo-9f01", status="stopped", step=18, total_steps=30, loss=1.7342,
             best_eval_loss=1.6021, started_at=T0 + 7200, **common)
    make_run(RUNS, "20251202-170000-custom-0c0c", status="created", created_at=T0 + 10800, base_model="my-model")


def completed_run() -> str:
    """The CPU demo's run as it finished: 30 steps, an eval per epoch, host RAM readings, its sample answers."""
    path = make_run(RUNS, RUN_ID, status="completed", step=30, total_steps=30, loss=1.5794, best_eval_loss=0.6683,
                    preset="cpu-demo", base_model="builtin:smollm2-135m-instruct", started_at=T0)
    (path / "worker.log").write_text("loading builtin:smollm2-135m-instruct\ntraining 36 samples for 30 steps on CPU "
                                     "(2 cores), fp32\nadapter saved\n", encoding="utf-8")
    writer = EventWriter(path / "events.jsonl")
    writer.emit(RunStarted(run_id=RUN_ID, config={}, total_steps=30, num_epochs=3.0, t=T0))
    writer.emit(Log(level="info", message="no GPU data: nvidia-ml-py: NVML Shared Library Not Found", t=T0 + 1))
    for step in range(1, 31):
        t = T0 + 2.7 * step
        loss = 1.5 + 3.5 * math.exp(-step / 6) + 0.25 * math.sin(step * 1.7)
        lr = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / 30))
        writer.emit(Step(step=step, epoch=step / 10, loss=round(loss, 4), lr=lr, grad_norm=round(2 + math.cos(step), 3),
                         tokens_per_s=175.0, samples_per_s=24.51, total_steps=30, t=t))
        writer.emit(HostReading(ram_used=int(3.1 * GIB), ram_total=int(23.5 * GIB), t=t))
        if step % 10 == 0:
            writer.emit(Eval(step=step, epoch=step / 10, eval_loss=round(0.6683 + 0.3 * (30 - step) / 10, 4),
                             perplexity=2.0, t=t))
    writer.emit(Sample(prompt="Who are you?", base=BASE_ANSWER, tuned=TUNED_ANSWER, t=T0 + 81))
    writer.emit(RunFinished(status="completed", final_step=30, adapter=f"runs/{RUN_ID}/adapter", t=T0 + 82))
    writer.close()
    return RUN_ID


@pytest.mark.parametrize("size", SIZES)
def test_runs_list(snap_compare, size):
    runs_in_every_state()
    app = TunedeckApp(runs_root=RUNS)
    assert snap_compare(app, terminal_size=size,
                        run_before=opened(RunsScreen, lambda screen: screen.query_one(DataTable).row_count == 5))


@pytest.mark.parametrize("size", SIZES)
def test_live_view_of_a_completed_run(snap_compare, size):
    app = TunedeckApp(runs_root=RUNS, attach=completed_run())
    assert snap_compare(app, terminal_size=size, run_before=opened(LiveScreen, lambda screen: screen.loaded))


# -- a new run: dataset and preset, the form, the review ------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_new_run(snap_compare, size):
    app = TunedeckApp(runs_root=RUNS, preset="cpu-demo")
    assert snap_compare(app, terminal_size=size, run_before=pressed("n", then=opened(NewRunScreen)))


def estimated(screen: Screen) -> bool:
    panels = screen.query(EstimatePanel)
    return bool(panels) and "total" in str(panels.first().content)


@pytest.mark.parametrize("size", SIZES)
def test_hyperparameter_form(snap_compare, size):
    app = TunedeckApp(runs_root=RUNS)
    assert snap_compare(app, terminal_size=size,
                        run_before=pushed(lambda: ConfigFormScreen("mi50-2x"), opened(ConfigFormScreen, estimated)))


@pytest.mark.parametrize("size", SIZES)
def test_review(snap_compare, size):
    app = TunedeckApp(runs_root=RUNS)
    config = load_config(preset="cpu-demo")
    assert snap_compare(app, terminal_size=size,
                        run_before=pushed(lambda: ReviewScreen(config, "cpu-demo"), opened(ReviewScreen)))


# -- the data inspector, replaying a recorded inspection ------------------------------------------------------


def replay_recorded_inspection(request: InspectRequest) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("inspect_replay.py")), str(RECORDED / "inspect-rows.json")]


@pytest.mark.parametrize("size", SIZES)
def test_data_inspector(snap_compare, size):
    Path("rows.json").write_text("[]", encoding="utf-8")  # the path the request names; the replay answers for it
    screen = DataScreen(InspectRequest("rows.json", cutoff=128), replay_recorded_inspection)
    assert snap_compare(Host(screen), terminal_size=size,
                        run_before=opened(DataScreen, lambda shown: shown.shown_row == 2))


# -- the chat pane, with a recorded client --------------------------------------------------------------------


class RecordedChat:
    """Answers like the chat worker did for the demo run: ready at once, then each answer streamed in pieces."""

    MODEL = ChatModel("adapter", "/models/smollm2-135m-instruct", RUN_ID, adapter=f"runs/{RUN_ID}/adapter",
                      run=f"runs/{RUN_ID}")

    def __init__(self, target: ChatTarget, on_reply: Callable[[ChatReply], None]):
        self.on_reply = on_reply
        on_reply(Ready(self.MODEL))

    def send(self, request: dict) -> None:
        if request.get("op") != "generate":
            return
        tuned, json_mode = request["adapter"], request["settings"]["json_mode"]
        text = '{"name": "tunedeck demo assistant"}' if tuned and json_mode else TUNED_ANSWER if tuned else BASE_ANSWER
        for piece in text.split(" "):
            self.on_reply(Token(id=request["id"], text=piece + " "))
        valid, error = (True, None) if text.startswith("{") else (False, "Expecting value at line 1 column 1")
        self.on_reply(Done(id=request["id"], text=text, tokens=len(text.split()) + 3, seconds=1.2,
                           first_token_s=0.31, tokens_per_s=17.37 if tuned else 2.19, finish="stop",
                           json_valid=valid if json_mode else None, json_error=error if json_mode else None,
                           adapter=tuned, model=RUN_ID, constrained=False))

    def close(self) -> None:
        pass


async def chat_side_by_side_in_json_mode(pilot: Pilot) -> None:
    app = pilot.app
    await pilot.press("c")
    assert await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))
    screen: ChatScreen = app.screen
    screen.conversation.path = screen.conversation.path.with_name("chat-20251202-141000.jsonl")  # named by the clock
    await pilot.press("escape", "s", "j")
    screen.query_one("#chat-prompt", Input).focus()
    await pilot.press(*"Who are you?", "enter")
    turns = [screen.query_one(f"#pane-{side}", ChatPane).turns for side in "AB"]
    assert await wait_for(pilot, lambda: all(t and all(turn.done for turn in t.values()) for t in turns))
    await pilot.pause()
    app.clear_notifications()
    steady(app)


@pytest.mark.parametrize("size", SIZES)
def test_chat(snap_compare, size):
    run = make_run(RUNS, RUN_ID, status="completed", step=30, total_steps=30, started_at=T0)
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text("{}", encoding="utf-8")
    app = TunedeckApp(services=make_services(RUNS, chat_client=RecordedChat))
    assert snap_compare(app, terminal_size=size, run_before=chat_side_by_side_in_json_mode)


# -- evaluation, export and the hardware report ----------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_eval_results(snap_compare, size):
    screen = EvalScreen(make_run(RUNS, RUN_ID, status="completed"), RecordedEvalLauncher())
    assert snap_compare(Host(screen), terminal_size=size,
                        run_before=opened(EvalScreen, lambda shown: shown.query_one("#eval-metrics").row_count))


async def export_q4_and_q8(pilot: Pilot) -> None:
    screen = pilot.app.screen
    screen.query_one("#quants").select("Q8_0")
    await pilot.press("ctrl+r")
    await opened(ExportScreen, lambda shown: shown.finished and shown.query_one("#report").row_count)(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_export_report(snap_compare, size):
    screen = ExportScreen(export_run_dir(RUNS), RecordedExportLauncher(), defaults={"quantizations": ["Q4_K_M"]})
    assert snap_compare(Host(screen), terminal_size=size, run_before=export_q4_and_q8)


DOCTOR_REPORT = {
    "version": 1, "host": "tunedeck-ci: Intel Xeon (2 cores), 23.5 GiB RAM", "gpus": [],
    "torch": {"version": "2.9.1+cpu"}, "matmul": {"gflops": {"fp32": 330.0, "bf16": 2171.0, "fp16": None}},
    "recommended_precision": "bf16", "seconds": 4.21,
    "checks": [
        {"name": "torch build", "status": "info", "detail": "torch 2.9.1+cpu, CPU only"},
        {"name": "GPUs", "status": "info", "detail": "no GPU: training runs on the CPU"},
        {"name": "matmul speed", "status": "info", "detail": "fp32 330, bf16 2171 GFLOPS (CPU, 1024x1024)"},
        {"name": "precision", "status": "ok", "detail": "recommended bf16: AMX-BF16 measured 6.6x faster than fp32"},
        {"name": "disk", "status": "warn", "detail": "3.1 GiB free at runs (less than 1.5x to spare)",
         "fix": "free some space or point --runs-dir at a larger disk"},
        {"name": "DeepSpeed", "status": "fail", "detail": "not installed: distributed.deepspeed_stage 2/3 needs it",
         "fix": "pip install 'tunedeck[deepspeed]' into the environment that has your torch"},
    ],
}


@pytest.mark.parametrize("size", SIZES)
def test_doctor(snap_compare, size):
    Path("doctor.json").write_text(json.dumps(DOCTOR_REPORT), encoding="utf-8")
    command = [sys.executable, "-c", "import sys; sys.stdout.write(open('doctor.json').read())"]
    screen = DoctorScreen(RUNS, command=command)
    assert snap_compare(Host(screen), terminal_size=size,
                        run_before=opened(DoctorScreen, lambda shown: shown.report is not None))
