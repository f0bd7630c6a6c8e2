"""The dataset inspection screen: counts, histogram, findings, and jumping from a finding to its row in the viewer.

Most tests replay a recorded worker transcript through a real subprocess (tests/inspect_replay.py): the report is
built from core/inspect/report.py's dataclasses with lengths measured by the real tokenizer, and every row preview
in it is the worker's own answer (core/inspect/service.py) for that row. One test runs the real worker end to end
where the inspection engine (core/inspect/inspect.py) is installed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from tunedeck.core.config import DataConfig
from tunedeck.core.data.tokenize import encode_conversation
from tunedeck.core.inspect.messages import InspectError, Progress, RawRow, ReportReady, RowPreview, parse_inspect_reply
from tunedeck.core.inspect.report import Finding, InspectReport, LengthStats
from tunedeck.core.inspect.service import answer_row, load_rows, row_segments
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.inspector import InspectRequest, worker_command
from tunedeck.tui.screens.data import MASKED, PAST_CUTOFF, TRAINED, DataScreen
from tunedeck.tui.screens.new_run import NewRunScreen
from tunedeck.tui.widgets.length_histogram import LengthHistogram

from .tui_support import Posted, make_services, screen_text, wait_for

CUTOFF = 128
ROWS = [
    {"instruction": "Who are you?", "input": "", "output": "I am a helpful assistant."},
    {"instruction": "What is 2+2?", "input": "", "output": "4."},
    {"instruction": "Who are you?", "input": "", "output": "I am a helpful assistant."},
    {"instruction": "no answer column"},
    {"instruction": "Tell a long story.", "input": "", "output": "Once upon a time there was a river. " * 30},
    {"instruction": "Bye", "input": "", "output": "Goodbye!"},
]
REPLAY = Path(__file__).with_name("inspect_replay.py")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inspect") / "rows.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def transcript(dataset: Path, tokenizer) -> Path:
    """A worker transcript for `dataset`: progress, the report, and the real preview of every row."""
    rows = load_rows(DataConfig(path=str(dataset), cutoff_len=CUTOFF), tokenizer)
    samples = [encode_conversation(tokenizer, rows.conversations[r], CUTOFF) for r in sorted(rows.conversations)]
    lengths = LengthStats([s.full_length for s in samples], [s.trained_tokens for s in samples], CUTOFF,
                          sum(s.full_length > CUTOFF for s in samples), 0)
    findings = [Finding("duplicate", "warning", 2, None, "the same sample as row 0", other_row=0),
                Finding("schema", "error", 3, None, "missing column 'output'"),
                Finding("truncated", "warning", 4, None, f"{samples[3].full_length} tokens, cutoff {CUTOFF}")]
    report = InspectReport(str(dataset), "alpaca", 6, 5, "auto", lengths, findings, {"user": 5, "assistant": 5})
    lines = [{"type": "progress", "phase": "measuring", "done": 3, "total": 5},
             {"type": "report", "report": report.to_json(), "lengths": lengths.lengths, "trained": lengths.trained}]
    answers = {str(r): answer_row(rows, r, tokenizer, CUTOFF).to_json() for r in range(len(ROWS))}
    path = dataset.with_name("transcript.json")
    path.write_text(json.dumps({"lines": lines, "rows": answers}), encoding="utf-8")
    return path


def replay(transcript: Path):
    return lambda request: [sys.executable, str(REPLAY), str(transcript)]


def viewer(app) -> Static:
    return app.screen.query_one("#data-row", Static)


def shown(app) -> str:
    """The row viewer's text (plain)."""
    content = viewer(app).content
    return getattr(content, "plain", str(content))


def styles_of(app, style: str) -> str:
    """The text of the sample's runs in one style (the legend above the sample left out)."""
    content = viewer(app).content
    body = content.plain.index("past the cutoff\n\n") + len("past the cutoff\n\n")
    return "".join(content.plain[span.start:span.end] for span in content.spans
                   if str(span.style) == style and span.start >= body)


def settled(app) -> bool:
    """The inspection screen has its report, or has said why not."""
    screen = app.screen
    if not isinstance(screen, DataScreen) or not screen.query("#data-status"):
        return False
    return screen.report is not None or screen.query_one("#data-status", Static).has_class("error-text")


async def open_screen(app, pilot, dataset: Path, command) -> DataScreen:
    await pilot.pause()
    app.push_screen(DataScreen(InspectRequest(str(dataset), cutoff=CUTOFF), command))
    assert await wait_for(pilot, lambda: isinstance(app.screen, DataScreen) and app.screen.report is not None)
    return app.screen


async def test_open_a_file_see_the_counts_and_jump_from_a_finding_to_its_row(tmp_path, dataset, transcript):
    app = TunedeckApp(runs_root=tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await open_screen(app, pilot, dataset, replay(transcript))
        summary = str(screen.query_one("#data-summary", Static).content)
        assert "rows      6 · samples 5" in summary and "format    alpaca" in summary
        assert "findings  schema 1 · truncated 1 · duplicate 1" in summary
        assert f"cutoff    {CUTOFF} · 1 over" in summary
        assert f"token lengths · 5 samples · cutoff {CUTOFF} · 1 over" in screen_text(app)  # the histogram
        table = screen.query_one(DataTable)
        assert table.row_count == 3 and table.has_focus
        assert await wait_for(pilot, lambda: shown(app).startswith("row 2 "))  # first finding's row

        await pilot.press("down", "down", "enter")  # the truncated finding
        assert await wait_for(pilot, lambda: shown(app).startswith("row 4 "))
        text = shown(app)
        assert "truncated: " in text and f"cutoff {CUTOFF}" in text
        assert "Tell a long story." in styles_of(app, MASKED)  # the prompt is shown, not trained
        assert styles_of(app, TRAINED).startswith("Once upon a time")  # the answer is trained...
        assert "river." in styles_of(app, PAST_CUTOFF)  # ...until the cutoff, after which it is cut away
        assert "<|im_start|>assistant" in text  # the chat template is applied

        await pilot.press("up", "enter")  # the schema finding: not a sample, shown raw
        assert await wait_for(pilot, lambda: shown(app).startswith("row 3 is not a sample"))
        assert '"instruction": "no answer column"' in shown(app)

        await pilot.press("right_square_bracket", "right_square_bracket")  # next rows, findings or not
        assert await wait_for(pilot, lambda: shown(app).startswith("row 5 "))
        assert styles_of(app, TRAINED).startswith("Goodbye!")

        await pilot.press("f")  # filter: the first kind only
        assert await wait_for(pilot, lambda: table.row_count == 1)
        assert "schema" in str(table.get_row_at(0)[0])
        footer = screen_text(app)
        for key in ("Jump to row", "Filter kind", "Accept dataset", "Next pane", "Back"):
            assert key in footer
        await pilot.press("a")
        assert await wait_for(pilot, lambda: not isinstance(app.screen, DataScreen))


async def test_the_new_run_screen_opens_the_inspection_and_takes_the_answer(tmp_path, dataset, transcript):
    app = TunedeckApp(services=make_services(tmp_path, inspect_command=replay(transcript)))
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("n")
        assert await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        app.screen.query_one("#dataset", Input).value = str(dataset)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, DataScreen) and app.screen.report is not None)
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        status = app.screen.query_one("#dataset-status", Static)
        assert "not accepted" in str(status.content) and app.screen.dataset is None
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, DataScreen) and app.screen.report is not None)
        await pilot.press("a")
        assert await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        assert "alpaca data, 5 usable rows" in str(status.content) and "inspected" in str(status.content)
        assert app.screen.dataset is not None and app.screen.dataset.path == str(dataset)


async def test_a_dying_worker_is_a_readable_notification(tmp_path, dataset):
    def dies(request):
        return [sys.executable, "-c", "import sys; sys.stderr.write('cannot load the tokenizer: gone\\n'); sys.exit(3)"]

    app = TunedeckApp(runs_root=tmp_path)
    posted = Posted()
    async with app.run_test(size=(160, 50), message_hook=posted) as pilot:
        await pilot.pause()
        app.push_screen(DataScreen(InspectRequest(str(dataset)), dies))
        assert await wait_for(pilot, lambda: posted.said("exit 3"))
        [note] = [n for n in posted.notes if "exit 3" in n.message]
        assert "cannot load the tokenizer: gone" in note.message and note.severity == "error"
        assert "✗" in str(app.screen.query_one("#data-status", Static).content)


def test_a_row_preview_is_the_training_tokenization(dataset, tokenizer):
    rows = load_rows(DataConfig(path=str(dataset)), tokenizer)
    conv = rows.conversations[4]
    segments, tokens, kept = row_segments(conv, tokenizer, CUTOFF)
    full = "".join(text for text, _, _ in segments)
    sample = encode_conversation(tokenizer, conv, CUTOFF)
    assert tokens == sample.full_length > CUTOFF and kept == sample.trained_tokens
    uncut = encode_conversation(tokenizer, conv, 10**9)
    assert tokenizer(full, add_special_tokens=False)["input_ids"] == uncut.input_ids
    trained = "".join(text for text, t, past in segments if t)
    assert trained.startswith("Once upon a time") and trained.rstrip().endswith("<|im_end|>")
    before_cut = "".join(text for text, _, past in segments if not past)
    assert len(tokenizer(before_cut, add_special_tokens=False)["input_ids"]) == CUTOFF
    assert answer_row(rows, 3, tokenizer, CUTOFF).problem == "missing column 'output'"


def test_worker_lines_read_back_typed_and_write_the_same_json(transcript):
    recorded = json.loads(transcript.read_text(encoding="utf-8"))
    progress, report = (parse_inspect_reply(line) for line in recorded["lines"])
    assert progress == Progress("measuring", 3, 5)
    assert isinstance(report, ReportReady) and (report.report.rows, report.report.samples) == (6, 5)
    assert [f.kind for f in report.report.findings] == ["duplicate", "schema", "truncated"]
    assert report.report.lengths.summary() == recorded["lines"][1]["report"]["lengths"]  # rebuilt from the lengths
    rows = {int(row): parse_inspect_reply(answer) for row, answer in recorded["rows"].items()}
    assert isinstance(rows[3], RawRow) and rows[3].problem == "missing column 'output'"
    assert isinstance(rows[4], RowPreview) and rows[4].tokens > CUTOFF and rows[4].segments[0][1] is False
    for line in [*recorded["lines"], *recorded["rows"].values()]:  # the wire as the worker wrote it
        assert parse_inspect_reply(line).to_json() == line
    assert parse_inspect_reply({"type": "error", "message": "gone", "hint": "check data.path"}).fatal
    assert parse_inspect_reply({"type": "error", "message": "m", "hint": None, "row": 2}) == InspectError("m", None, 2)
    assert parse_inspect_reply({"type": "histogram"}) is None  # the protocol may grow
    with pytest.raises(ValueError, match="malformed row"):
        parse_inspect_reply({"type": "row", "row": 1})


def test_the_worker_reports_an_unreadable_dataset_as_one_line(tmp_path):
    missing = tmp_path / "nowhere.json"
    done = subprocess.run(worker_command(InspectRequest(str(missing))), input="", capture_output=True, text=True,
                          timeout=300)
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 2 and last["type"] == "error"
    assert f"{missing}: data file not found" in last["message"] and last["hint"] == "check data.path"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tunedeck.core.inspect.inspect") is None,
                    reason="the inspection engine (core/inspect/inspect.py) is not installed")
async def test_the_real_worker_end_to_end(tmp_path, dataset, builtin_model_dir):
    app = TunedeckApp(runs_root=tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        app.push_screen(DataScreen(InspectRequest(str(dataset), cutoff=CUTOFF)))
        assert await wait_for(pilot, lambda: settled(app), timeout_s=180)
        screen = app.screen
        assert screen.report is not None, screen.query_one("#data-status", Static).content
        summary = str(screen.query_one("#data-summary", Static).content)
        assert "samples 5" in summary
        assert screen.query_one(LengthHistogram).plt is not None
        truncated = [i for i, f in enumerate(screen.findings) if f.kind == "truncated"]
        assert truncated and screen.findings[truncated[0]].row == 4
        table = screen.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(str(truncated[0])))
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: shown(app).startswith("row 4 "), timeout_s=60)
        assert "river." in styles_of(app, PAST_CUTOFF)


@pytest.mark.slow
async def test_a_markdown_folder_through_the_real_worker(tmp_path):
    """Corpora are measured by the worker itself (chunk samples as training encodes them), engine or not."""
    words = "Each morning the ferry crosses the bay, and the same gulls follow it to the far pier."
    for name in ("one.md", "two.md"):
        body = "\n\n".join(f"## Part {i}\n\n" + " ".join([words] * (4 + i % 5)) for i in range(12))
        (tmp_path / name).write_text(f"---\ntitle: {name}\n---\n\n{body}\n", encoding="utf-8")
    request = InspectRequest(str(tmp_path), cutoff=300, corpus_mode="style_sft", chunk_tokens=(150, 400))
    app = TunedeckApp(runs_root=tmp_path / "runs")
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        app.push_screen(DataScreen(request))
        assert await wait_for(pilot, lambda: settled(app), timeout_s=180)
        screen = app.screen
        assert screen.report is not None, screen.query_one("#data-status", Static).content
        summary = str(screen.query_one("#data-summary", Static).content)
        assert "format    markdown" in summary and f"samples {screen.report.samples}" in summary
        truncated = [i for i, f in enumerate(screen.findings) if f.kind == "truncated"]
        assert truncated and "one.md:" in screen.findings[truncated[0]].message
        table = screen.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(str(truncated[0])))
        row = screen.findings[truncated[0]].row
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: shown(app).startswith(f"row {row} · one.md:"), timeout_s=60)
        assert "task continue" in shown(app) or "task expand" in shown(app)
        assert "ferry crosses the bay" in styles_of(app, TRAINED) and styles_of(app, PAST_CUTOFF)
