"""Tails: whole lines only, files replaced or truncated, starting at the end or the last bytes; events, log text and
a run's history on top."""

from __future__ import annotations

import os
from pathlib import Path

from tunedeck.core.stream.events import EventWriter, Log, Step
from tunedeck.core.stream.tail import EventTail, FileTail, LogTail, RunTail


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def test_a_partial_last_line_waits_for_its_end(tmp_path: Path):
    path = tmp_path / "growing.txt"
    tail = FileTail(path)
    assert tail.poll() == []  # no file yet
    append(path, "first\nsec")
    assert tail.poll() == [b"first"]
    assert tail.poll() == []
    append(path, "ond\n\nthird\n")
    assert tail.poll() == [b"second", b"", b"third"]
    append(path, "fourth")
    assert tail.read() == b""
    append(path, "\n")
    assert tail.read() == b"fourth\n"


def test_a_replaced_or_truncated_file_is_read_again_from_its_start(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    path.write_text("old 1\nold 2\nold 3 partial")
    tail = FileTail(path)
    assert tail.poll() == [b"old 1", b"old 2"]
    replacement = tmp_path / "new.jsonl"
    replacement.write_text("new 1\n")
    os.replace(replacement, path)  # a new file under the same name, shorter than what was read
    assert tail.poll() == [b"new 1"] and tail.restarts == 1
    append(path, "new 2\n")
    assert tail.poll() == [b"new 2"]
    replacement.write_text("newer 1\nnewer 2\nnewer 3\nnewer 4\n")  # longer than what was read
    os.replace(replacement, path)
    assert tail.poll() == [b"newer 1", b"newer 2", b"newer 3", b"newer 4"] and tail.restarts == 2
    path.write_text("again\n")  # truncated in place: the same file, shorter
    assert tail.poll() == [b"again"] and tail.restarts == 3


def test_starting_at_the_end_returns_only_what_is_written_from_then_on(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    path.write_text("before 1\nbefore 2\nhalf a li")
    tail = FileTail(path, back=0)
    append(path, "ne\nafter 1\n")
    assert tail.poll() == [b"after 1"]  # the line being written when following began is not cut in two
    missing = FileTail(tmp_path / "later.jsonl", back=0)
    (tmp_path / "later.jsonl").write_text("everything\nis new\n")
    assert missing.poll() == [b"everything", b"is new"]


def test_starting_n_bytes_before_the_end_begins_at_a_whole_line(tmp_path: Path):
    path = tmp_path / "worker.log"
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    tail = FileTail(path, back=len("line 998\nline 999\n"))  # exactly two lines: none is cut
    assert tail.poll() == [b"line 998", b"line 999"]
    tail = FileTail(path, back=len("ine 998\nline 999\n"))  # inside line 998: it is skipped
    assert tail.poll() == [b"line 999"]
    tail = FileTail(path, back=4)  # inside the last line: skipped, nothing yet
    assert tail.poll() == []
    append(path, "line 1000\n")
    assert tail.poll() == [b"line 1000"]


def test_log_tail_starts_near_the_end_and_follows(tmp_path: Path):
    path = tmp_path / "worker.log"
    path.write_text("".join(f"line {i}\n" for i in range(10_000)))
    tail = LogTail(path, last_bytes=100)
    first = tail.poll()
    assert first[-1] == "line 9999" and len(first) < 20 and all(line.startswith("line ") for line in first)
    with open(path, "a") as handle:
        handle.write("new line\nLoading 0%\rLoading 100%\nhalf")
    assert tail.poll() == ["new line", "Loading 0%", "Loading 100%"]  # progress bars redraw with \r
    path.write_text("a new log\n")
    assert tail.poll() == ["a new log"]


def test_event_tail_returns_only_complete_lines_and_continues(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.poll() == []  # no file yet
    line = Log(level="info", message="first", t=1.0).to_json()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(line[:10])
        handle.flush()
        assert tail.poll() == []  # half a line is not an event
        handle.write(line[10:] + "\n")
        handle.flush()
        assert tail.poll() == [Log(level="info", message="first", t=1.0)]
        handle.write(Log(level="info", message="ünïcode second", t=2.0).to_json() + "\n")
        handle.write("not json\n")
    assert tail.poll() == [Log(level="info", message="ünïcode second", t=2.0)]
    assert tail.poll() == []


def test_run_tail_replays_then_follows_appended_events_in_whole_lines(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.emit(Step(step=1, epoch=0.1, loss=2.0, lr=1e-3, t=1.0))
    run_tail = RunTail(path)
    assert len(run_tail.replay().steps) == 1
    line = Step(step=2, epoch=0.2, loss=1.5, lr=1e-3, t=2.0).to_json()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line[:20])
        handle.flush()
        assert run_tail.poll() == []
        handle.write(line[20:] + "\n")
    [event] = run_tail.poll()
    assert event.step == 2 and run_tail.history.steps.last.loss == 1.5
    assert list(run_tail.history.steps["step"]) == [1.0, 2.0]

    replacement = tmp_path / "other.jsonl"
    replacement.write_text(Step(step=7, epoch=1.0, loss=0.5, lr=1e-3, t=9.0).to_json() + "\n")
    os.replace(replacement, path)  # another run's file under the same name: another history, not a mix
    [event] = run_tail.poll()
    assert event.step == 7 and list(run_tail.history.steps["step"]) == [7.0]
