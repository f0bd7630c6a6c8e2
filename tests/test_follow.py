"""The command line's follow loop and printers: events appended while following are printed as the README shows
them, the loop ends with the job, Ctrl-C asks the job to stop; the status line on a terminal."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tunedeck.core.cli.follow import follow, follow_export, follow_run
from tunedeck.core.cli.printers import CLEAR, KEEP, REDRAW, EvalPrinter, LiveLine, TrainingPrinter
from tunedeck.core.export.layout import ExportLayout
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import (
    Eval,
    EvalProgress,
    EvalStarted,
    EventWriter,
    ExportCheck,
    ExportFinished,
    ExportProgress,
    ExportStarted,
    ExportStep,
    Log,
    RunFinished,
    RunStarted,
    Sample,
    Step,
)
from tunedeck.core.stream.tail import EventTail

TRAINING = [
    RunStarted(run_id="r", config={}, hardware={"cpu_cores": 2}, precision="fp32", total_steps=3, train_samples=8,
               t=100.0),
    Step(step=1, epoch=0.33, loss=2.5, lr=1e-3, tokens_per_s=100.0, total_steps=3, t=101.0),
    Log(level="warning", message="slow disk", t=102.0),
    Eval(step=2, epoch=0.67, eval_loss=1.5, perplexity=4.48, t=103.0),
    Step(step=2, epoch=0.67, loss=1.75, lr=1e-3, tokens_per_s=200.0, total_steps=3, t=103.0),
    Step(step=3, epoch=1.0, loss=1.0, lr=1e-3, tokens_per_s=300.0, total_steps=3, t=105.0),
    Sample(prompt="Who are you?", base="I'm here to help.", tuned="I am tunedeck's demo assistant.", t=105.5),
    RunFinished(status="completed", final_step=3, adapter="runs/r/adapter", t=106.0),
]
TRAINING_TEXT = """\
training 8 samples for 3 steps on CPU (2 cores), fp32
step 1/3  epoch 0.33  loss 2.5000  lr 1.00e-03  100 tok/s  elapsed 0:01  ETA --:--
warning: slow disk
eval  step 2  epoch 0.67  eval_loss 1.5000  perplexity 4.48
step 2/3  epoch 0.67  loss 1.7500  lr 1.00e-03  200 tok/s  elapsed 0:03  ETA 0:02
step 3/3  epoch 1.00  loss 1.0000  lr 1.00e-03  300 tok/s  elapsed 0:05  ETA 0:00
completed: 3 steps in 0:06, loss 2.5000 -> 1.0000, 200 tok/s
adapter: runs/r/adapter

> Who are you?
  base model : I'm here to help.
  fine-tuned : I am tunedeck's demo assistant.
"""


def write_later(path: Path, events: list, then=None, every_s: float = 0.03, delay_s: float = 0.0
                ) -> threading.Thread:
    """A thread appending events one by one while the file is followed, then calling `then`."""
    def run() -> None:
        time.sleep(delay_s)
        writer = EventWriter(path)
        for event in events:
            time.sleep(every_s)
            writer.emit(event)
        writer.close()
        if then is not None:
            then()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_following_a_run_prints_events_appended_while_it_runs(tmp_path: Path):
    path = tmp_path / "run-1"
    path.mkdir()
    run = RunDir(path)
    run.update_status(status="running", pid=os.getpid())  # a live pid: the run counts as running
    writer = write_later(run.events_path, TRAINING, then=lambda: run.update_status(status="completed"))
    out = io.StringIO()
    assert follow_run(run, out=out) == 0
    writer.join()
    assert out.getvalue() == TRAINING_TEXT


def test_the_last_events_of_a_worker_that_is_gone_are_still_printed(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    out = io.StringIO()
    printer = TrainingPrinter(out, live=False)

    def alive() -> bool:  # the worker writes everything between the loop's read and its check, then is gone
        writer = EventWriter(path)
        for event in TRAINING:
            writer.emit(event)
        writer.close()
        return False

    follow(EventTail(path), printer, alive=alive, stop=lambda now: None)
    assert printer.finished is not None and printer.finished.status == "completed"
    assert out.getvalue() == TRAINING_TEXT


def test_a_finished_segment_already_written_does_not_end_the_following(tmp_path: Path):
    """A stopped run being resumed: its file ends in run_finished, and the resumed worker adds a new segment."""
    path = tmp_path / "events.jsonl"
    first = EventWriter(path)
    for event in TRAINING[:2] + [RunFinished(status="stopped", final_step=1, t=101.5)]:
        first.emit(event)
    resumed = [RunStarted(run_id="r", config={}, hardware={"cpu_cores": 2}, precision="fp32", total_steps=3,
                          train_samples=8, resumed_from_step=1, t=200.0),
               *TRAINING[4:]]
    out = io.StringIO()
    printer = TrainingPrinter(out, live=False)
    writer = write_later(path, resumed, every_s=0.05, delay_s=1.0)  # the resumed worker loads its model first
    started = time.monotonic()
    # The worker never exits here: the loop leaves grace_s after the live run_finished.
    follow(EventTail(path), printer, alive=lambda: time.monotonic() - started < 30, stop=lambda now: None,
           poll_s=0.02, grace_s=0.3)
    assert time.monotonic() - started < 10
    writer.join()
    assert printer.finished.status == "completed"
    assert "resumed at step 1\n" in out.getvalue() and "completed: 3 steps" in out.getvalue()


@pytest.mark.parametrize("presses", [2, 3])
def test_ctrl_c_asks_the_job_to_stop_then_at_once_then_kills_it(tmp_path: Path, presses: int):
    """A real SIGINT (as Ctrl-C sends) while following. The worker here answers like the real ones: the first stop
    request stops after the step, the second stops at once and records it; a third press kills a stuck worker."""
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    for event in TRAINING[:2]:
        writer.emit(event)
    out = io.StringIO()
    printer = TrainingPrinter(out, live=False)
    stops: list[bool] = []
    worker = {"alive": True}

    def stop(now: bool) -> None:
        stops.append(now)
        if now:
            worker["alive"] = False  # killed: it writes nothing more
        elif len(stops) == 1:
            writer.emit(Log(level="info", message="received SIGTERM: stopping after this step"))
        elif presses == 2:
            writer.emit(RunFinished(status="stopped", final_step=1, message="stopped at once by a second signal",
                                    t=102.0))
            worker["alive"] = False

    def alive() -> bool:
        if printer.last_step is not None and len(stops) < presses:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, while the loop checks on the worker
        return worker["alive"]

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        follow(EventTail(path), printer, alive=alive, stop=stop, poll_s=0.01)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stops == [False, False, True][:presses]
    text = out.getvalue()
    assert text.startswith("training 8 samples for 3 steps on CPU (2 cores), fp32\nstep 1/3")
    assert "\nstopping after the current step (Ctrl-C again to stop at once)\n" in text
    assert text.index("stopping after the current step") < text.index("received SIGTERM: stopping after this step")
    assert text.count("stopping now\n") == presses - 1
    if presses == 2:
        assert printer.finished.status == "stopped"
        assert text.endswith("stopping now\nstopped: 1 steps in 0:02, loss 2.5000 -> 2.5000, 100 tok/s\n")
    else:
        assert printer.finished is None and "stopped: " not in text


def test_following_an_export_prints_steps_checks_and_the_report(tmp_path: Path):
    run = RunDir(tmp_path / "r1")
    layout = ExportLayout.for_run(run)
    layout.root.mkdir(parents=True)
    layout.update_status(status="running", pid=os.getpid())
    layout.report.write_text(json.dumps({"prompt": "Who are you?", "models": [{
        "name": "Q8_0", "size_bytes": int(138.1 * 2**20) + 1, "perplexity": 1.9373, "ratio_to_merged": 1.0013,
        "tokens_per_s": 23.1, "gen_tokens_per_s": 3.2, "answer": "I am tunedeck's demo assistant, a fine-tuned with "
        "tunedeck.", "ended_on": "<|im_end|>", "path": "export/r1-Q8_0.gguf", "modelfile": "export/Modelfile.Q8_0"}]}))
    events = [
        ExportStarted(run_id="r1", checkpoint="checkpoint-30", adapter="checkpoints/checkpoint-30",
                      steps=["merge", "gguf"]),
        ExportStep(step="merge", state="started"),
        ExportProgress(step="merge", fraction=0.5, message="merging"),
        ExportStep(step="merge", state="done", seconds=1.5, message="merged/ 256.6 MiB"),
        ExportStep(step="gguf", state="skipped", message="complete"),
        Log(level="info", message="not shown"),
        ExportCheck(name="stop", target="Q8_0", passed=True, message="stopped on <|im_end|>"),
        ExportCheck(name="ollama", target="Q8_0", passed=None, message="ollama is not installed"),
        ExportFinished(status="completed", report=str(layout.report), message="every check passed"),
    ]
    writer = write_later(layout.events_path, events, then=lambda: layout.update_status(status="completed"))
    out = io.StringIO()
    assert follow_export(layout, out=out) == 0
    writer.join()
    assert out.getvalue() == """\
exporting run r1 from checkpoint-30: 2 steps
[1/2] merge done (1.5 s): merged/ 256.6 MiB
[2/2] gguf skipped: complete
  check ok   stop      Q8_0      stopped on <|im_end|>
  check skip ollama    Q8_0      ollama is not installed

model          size  perplexity vs merged eval tok/s gen tok/s  answer to 'Who are you?'
Q8_0        138.1Mi      1.9373     +0.1%       23.1       3.2  "I am tunedeck's demo assistant, a fine-tuned with \
tunedeck." [<|im_end|>]
Q8_0: export/r1-Q8_0.gguf
      export/Modelfile.Q8_0
completed: every check passed
"""


def test_the_status_line_on_a_terminal_and_plain_lines_elsewhere(monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    expected = {REDRAW: "\r\x1b[Kstatus\r\x1b[Kprinted\n\r\x1b[Kstatus",  # stays under the printed lines
                CLEAR: "\r\x1b[Kstatus\r\x1b[Kprinted\n",  # the printed line replaces it
                KEEP: "\r\x1b[Kstatus\nprinted\n"}  # left above as a finished line
    for mode, text in expected.items():
        line = LiveLine(io.StringIO(), live=True, after_print=mode)
        line.draw("status")
        line.print("printed")
        assert line.out.getvalue() == text, mode
    line = LiveLine(io.StringIO(), live=True)
    line.draw("x" * 50)
    line.end()
    assert line.out.getvalue() == "\r\x1b[K" + "x" * 29 + "\n"  # cut to the terminal's width
    plain = LiveLine(io.StringIO(), live=False)
    plain.draw("only on a terminal")
    plain.status("a plain line")
    plain.end()
    assert plain.out.getvalue() == "a plain line\n"


def test_training_keeps_its_progress_bar_under_printed_lines(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    out = io.StringIO()
    printer = TrainingPrinter(out, live=True)
    for event in TRAINING[:3]:
        printer.handle(event)
    bar = "\r\x1b[K[##########....................] step 1/3  epoch 0.33  loss 2.5000  lr 1.00e-03  100 tok/s  " \
          "elapsed 0:01  ETA --:--"
    assert out.getvalue() == "training 8 samples for 3 steps on CPU (2 cores), fp32\n" + bar + \
        "\r\x1b[Kwarning: slow disk\n" + bar
    printer.handle(TRAINING[-1])
    printer.summary()
    assert out.getvalue().endswith(bar + "\ncompleted: 3 steps in 0:06, loss 2.5000 -> 2.5000, 100 tok/s\n"
                                   "adapter: runs/r/adapter\n")


def test_evaluation_progress_is_one_line_per_batch_off_a_terminal():
    out = io.StringIO()
    printer = EvalPrinter(out, live=False)
    for event in [EvalStarted(run_id="r", source="validation split of demo.json", rows=7, phases=["loss", "generate"]),
                  EvalProgress(phase="loss", done=7, total=7), EvalProgress(phase="generate", done=4, total=7),
                  Log(level="warning", message="2 answers cut at max_new_tokens")]:
        printer.handle(event)
    printer.end_line()
    assert out.getvalue() == ("evaluating 7 rows from validation split of demo.json\n[1/2] loss: 7/7 rows\n"
                              "[2/2] generate: 4/7 rows\nwarning: 2 answers cut at max_new_tokens\n")
