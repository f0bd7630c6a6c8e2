"""What the user is about to lose, said where they decide: samples cut by the cutoff (and the cutoffs that keep
95% / 99% whole), a dataset_info.json picked as the data file, and which data the run reads.

The inspection worker is replayed from a transcript whose report and row previews are the real worker's own
(core/inspect/service.py on the real tokenizer), as in test_tui_data.py.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Static

from tunedeck.core.config import DataConfig
from tunedeck.core.inspect.inspect import inspect_dataset
from tunedeck.core.inspect.messages import ReportReady
from tunedeck.core.inspect.service import answer_row, load_rows
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.inspector import InspectRequest
from tunedeck.tui.screens.config_form import ConfigFormScreen
from tunedeck.tui.screens.data import DataScreen
from tunedeck.tui.screens.new_run import NewRunScreen
from tunedeck.tui.screens.review import ReviewScreen

from .tui_support import RecordingLauncher, make_services, screen_text, wait_for

CUTOFF = 64
REPLAY = Path(__file__).with_name("inspect_replay.py")
LONG = "The river bends where the old mill stood, and the light falls across the water. "


def write_transcript(cfg: DataConfig, tokenizer, where: Path) -> tuple[Path, dict]:
    """The real worker's report and row answers for `cfg`, recorded for the replay script."""
    report = inspect_dataset(cfg, tokenizer=tokenizer)
    rows = load_rows(cfg, tokenizer)
    lines = [ReportReady(report).to_json()]
    answers = {str(r): answer_row(rows, r, tokenizer, cfg.cutoff_len).to_json() for r in range(report.rows)}
    where.write_text(json.dumps({"lines": lines, "rows": answers}), encoding="utf-8")
    return where, report.to_json()


@pytest.fixture(scope="module")
def long_rows(tmp_path_factory, tokenizer) -> tuple[Path, Path, dict]:
    folder = tmp_path_factory.mktemp("cut")
    path = folder / "rows.json"
    rows = [{"instruction": f"Question {i}?", "input": "", "output": (LONG * (1 + i % 5)) if i < 12 else "Short."}
            for i in range(20)]
    path.write_text(json.dumps(rows), encoding="utf-8")
    transcript, report = write_transcript(DataConfig(path=str(path), cutoff_len=CUTOFF), tokenizer,
                                          folder / "transcript.json")
    return path, transcript, report


def replay(transcript: Path, seen: list | None = None):
    def command(request: InspectRequest) -> list[str]:
        if seen is not None:
            seen.append(request)
        return [sys.executable, str(REPLAY), str(transcript)]
    return command


def status(app) -> str:
    return str(app.screen.query_one("#dataset-status", Static).content)


async def pick_preset(app, pilot, preset: str) -> ConfigFormScreen:
    options = app.screen.query_one("#presets", OptionList)
    options.highlighted = [options.get_option_at_index(i).id for i in range(options.option_count)].index(preset)
    options.focus()
    await pilot.press("enter")
    assert await wait_for(pilot, lambda: isinstance(app.screen, ConfigFormScreen))
    await pilot.pause()
    return app.screen


async def test_samples_cut_by_the_cutoff_are_said_and_a_cutoff_that_keeps_95_percent_is_offered(tmp_path, long_rows):
    path, transcript, report = long_rows
    stats = report["lengths"]
    over = stats["over_cutoff"]
    assert over >= 8 and stats["answer_tokens_lost"] > 0
    measured = sorted(json.loads(transcript.read_text())["lines"][0]["lengths"])
    keep95 = measured[math.ceil(0.95 * len(measured)) - 1]
    keep99 = measured[math.ceil(0.99 * len(measured)) - 1]
    assert stats["count"] == len(measured) == 20 and CUTOFF < keep95 <= keep99
    warning = (f"{over} of 20 samples are cut, {stats['answer_tokens_lost']} of {stats['answer_tokens']} trained "
               f"tokens lost; cutoff {keep95} keeps 95% whole (5), {keep99} keeps 99% (9)")

    app = TunedeckApp(services=make_services(tmp_path, launcher=RecordingLauncher(tmp_path),
                                           inspect_command=replay(transcript)))
    async with app.run_test(size=(170, 50)) as pilot:
        await pilot.press("n")
        app.screen.query_one("#dataset", Input).value = str(path)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, DataScreen) and app.screen.report is not None)
        summary = str(app.screen.query_one("#data-summary", Static).content)
        assert (f"          {over} of 20 cut · {stats['answer_tokens_lost']} trained tokens lost\n"
                f"          {keep95} keeps 95% whole (5) · {keep99} 99% (9)\n") in summary
        assert warning in str(app.screen.query_one("#data-status", Static).content)
        assert any(warning == n.message for n in app._notifications)
        footer = screen_text(app)
        assert "5 Keep 95% whole" in footer and "9 Keep 99% whole" in footer
        await pilot.press("5")
        assert await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        assert f"inspected · data.cutoff_len {keep95}" in status(app)
        form = await pick_preset(app, pilot, "cpu-demo")
        assert form.query_one("#field-data-cutoff_len").value() == keep95
        assert form.query_one("#field-data-path").value() == str(path)


async def test_a_dataset_info_json_lists_its_entries_and_the_run_reads_the_chosen_one(tmp_path, tokenizer):
    (tmp_path / "a.json").write_text(json.dumps([{"instruction": "hi", "output": "hello"}]), encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps([{"q": f"q{i}", "a": f"a{i}"} for i in range(3)]), encoding="utf-8")
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"first": {"file_name": "a.json"},
                                "second": {"file_name": "b.json", "columns": {"prompt": "q", "response": "a"}},
                                "on_the_hub": {"hf_hub_url": "someone/data"}}), encoding="utf-8")
    transcript, _ = write_transcript(DataConfig(dataset_info=str(info), name="second", cutoff_len=CUTOFF), tokenizer,
                                     tmp_path / "transcript.json")
    requests: list[InspectRequest] = []
    launcher = RecordingLauncher(tmp_path / "runs")
    app = TunedeckApp(services=make_services(tmp_path / "runs", launcher=launcher,
                                           inspect_command=replay(transcript, requests)))
    async with app.run_test(size=(170, 50)) as pilot:
        await pilot.press("n")
        app.screen.query_one("#dataset", Input).value = str(info)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: "choose an entry" in status(app))
        assert status(app).startswith("this is a dataset_info.json: choose an entry (2 have their file here")
        entries = app.screen.query_one("#entries", OptionList)
        assert [entries.get_option_at_index(i).id for i in range(entries.option_count)] == ["first", "second"]
        assert entries.has_focus and "expected a JSON list" not in screen_text(app)
        await pilot.press("down", "enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, DataScreen) and app.screen.report is not None)
        assert (requests[-1].dataset_info, requests[-1].name) == (str(info), "second")
        await pilot.press("a")
        assert await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        assert "entry 'second': alpaca data, 3 usable rows · inspected" in status(app)
        form = await pick_preset(app, pilot, "cpu-demo")
        assert form.query_one("#field-data-dataset_info").value() == str(info)
        assert form.query_one("#field-data-name").value() == "second"
        await pilot.press("ctrl+r")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        said = str(app.screen.query_one("#review-data", Static).content)
        assert said == (f"data: entry 'second' of {info} -> {tmp_path / 'b.json'}; data.path "
                        "(builtin:demo_identity.json) is not used")
