"""Run history: the fast replay equals event-by-event parsing for every event type and version, resumes, odd files."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tunedeck.core.stream.events import (
    Checkpoint,
    Eval,
    EventWriter,
    Gpu,
    Host,
    Log,
    RunFinished,
    RunStarted,
    Step,
    parse_line,
)
from tunedeck.core.stream.history import GPU_HISTORY, RunHistory, bucket_means, downsample, smooth
from tunedeck.core.stream.tail import RunTail

from .test_events import EXAMPLES

GIB = 1 << 30


def write_run(path: Path, steps: int = 400, gpus: int = 2, resume_at: int | None = None) -> list:
    writer = EventWriter(path)
    events = [Log(level="info", message="loading model", t=1.0),
              RunStarted(run_id="r", config={}, total_steps=steps, num_epochs=2.0, t=2.0)]
    for step in range(1, steps + 1):
        t = 2.0 + step
        events.append(Step(step=step, epoch=step / (steps / 2), loss=3.0 / step, lr=1e-4, t=t, total_steps=steps,
                           grad_norm=None if step % 7 == 0 else 1.5, tokens_per_s=None if step == 1 else 900.5))
        events.extend(Gpu(index=i, name="MI50", mem_used=(20 + i) * GIB + step, mem_total=32 * GIB, util=90.0, t=t)
                      for i in range(gpus))
        events.append(Host(ram_used=8 * GIB + step, ram_total=64 * GIB, t=t))
        if step % 100 == 0:
            events.append(Eval(step=step, epoch=step / (steps / 2), eval_loss=5.0 / step, perplexity=1.1, t=t))
            events.append(Checkpoint(step=step, path=f"checkpoints/checkpoint-{step}", t=t))
        if resume_at and step == resume_at + 20:
            events.append(RunStarted(run_id="r", config={}, total_steps=steps, resumed_from_step=resume_at, t=t))
            events.extend(Step(step=s, epoch=1.0, loss=9.0, lr=1e-4, t=t + s) for s in range(resume_at + 1, steps))
            break
    events.append(RunFinished(status="completed", final_step=steps, t=10_000.0))
    for event in events:
        writer.emit(event)
    writer.close()
    return events


def one_by_one(events) -> RunHistory:
    history = RunHistory()
    for event in events:
        history.add(event)
    return history


def assert_same(a: RunHistory, b: RunHistory) -> None:
    for name in ("t", "step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s"):
        assert [x if not math.isnan(x) else "nan" for x in a.steps[name]] == \
               [x if not math.isnan(x) else "nan" for x in b.steps[name]], name
    assert a.steps.last == b.steps.last
    assert list(a.steps.recent) == list(b.steps.recent)
    assert (a.started, a.finished, a.evals, a.checkpoints, list(a.logs), a.host) == \
           (b.started, b.finished, b.evals, b.checkpoints, list(b.logs), b.host)
    assert {k: list(v) for k, v in a.gpus.items()} == {k: list(v) for k, v in b.gpus.items()}
    assert (a.first_t, a.last_t) == (b.first_t, b.last_t)


def test_replay_of_a_whole_file_equals_adding_event_by_event(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    events = write_run(path)
    replayed = RunTail(path).replay()
    assert_same(replayed, one_by_one(events))
    assert len(replayed.steps) == 400 and math.isnan(replayed.steps["grad_norm"][6])
    assert all(len(readings) == GPU_HISTORY for readings in replayed.gpus.values())
    assert replayed.best_eval().eval_loss == 5.0 / 400
    assert replayed.total_steps == 400
    assert replayed.host == Host(ram_used=8 * GIB + 400, ram_total=64 * GIB, t=402.0)


def test_replay_takes_the_slow_path_for_odd_lines_and_resumes(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    events = write_run(path, steps=300, resume_at=150)
    resumed = RunTail(path).replay()
    assert_same(resumed, one_by_one(events))
    assert resumed.steps["step"][150] == 151 and resumed.steps["loss"][150] == 9.0  # replayed steps replaced
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\nnot json\n{\"v\": 1, \"t\": 5.0, \"type\": \"future_type\"}\n")
    assert_same(RunTail(path).replay(), one_by_one(events))


def test_the_fast_load_reads_every_event_type_the_writer_writes(tmp_path: Path):
    """The fast path finds lines by the writer's layout: one of each type (and steps around them) must come out the
    same as parsing line by line, through the fast path itself, not its line-by-line fallback."""
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    steps = [Step(step=s, epoch=s / 10, loss=2.0 / s, lr=1e-4, grad_norm=None if s == 2 else 1.0, t=float(s))
             for s in range(1, 4)]
    events = [steps[0], *EXAMPLES, *steps[1:]]
    for event in events:
        writer.emit(event)
    writer.close()
    data = path.read_bytes()
    fast = RunHistory()
    assert fast._load_fast(data), "the writer's own lines fell back to line-by-line parsing"
    assert_same(fast, one_by_one(events))
    by_line = RunHistory()
    for line in data.splitlines():
        for event in parse_line(line):
            by_line.add(event)
    assert_same(fast, by_line)
    assert fast.host == Host(ram_used=8 << 30, ram_total=64 << 30, t=fast.host.t) and len(fast.steps) == 4


def v1_line(event, **extra) -> str:
    """A line as version 1 of the writer wrote it."""
    data = json.loads(event.to_json())
    data["v"] = 1
    return json.dumps({**data, **extra}) + "\n"


def test_a_version_1_file_reads_the_same_fast_and_line_by_line_with_host_ram(tmp_path: Path):
    """Version 1 carried host RAM on `gpu` readings (index -1: host only); old runs still open fast, same values."""
    path = tmp_path / "events.jsonl"
    lines = [v1_line(RunStarted(run_id="r", config={}, total_steps=100, t=1.0))]
    for step in range(1, 101):
        lines.append(v1_line(Step(step=step, epoch=step / 50, loss=3.0 / step, lr=1e-4, t=1.0 + step)))
        lines += [v1_line(Gpu(index=i, name="MI50", mem_used=step, mem_total=32 * GIB, t=1.0 + step),
                          host_ram_used=step * GIB, host_ram_total=128 * GIB, node=None) for i in (0, 1)]
    cpu_path = tmp_path / "cpu.jsonl"
    cpu_lines = [v1_line(Step(step=1, epoch=0.1, loss=2.0, lr=1e-3, t=1.0)),
                 v1_line(Gpu(index=-1, name="host", mem_used=0, mem_total=0, t=2.0),
                         host_ram_used=3 * GIB, host_ram_total=24 * GIB, node=None)]
    for file, written in ((path, lines), (cpu_path, cpu_lines)):
        file.write_text("".join(written), encoding="utf-8")
        fast = RunHistory()
        assert fast._load_fast(file.read_bytes())
        by_line = one_by_one(event for line in written for event in parse_line(line))
        assert_same(fast, by_line)
    assert fast.host == Host(ram_used=3 * GIB, ram_total=24 * GIB, t=2.0, v=1) and fast.gpus == {}
    gpu_run = RunTail(path).replay()
    assert gpu_run.host == Host(ram_used=100 * GIB, ram_total=128 * GIB, t=101.0, v=1)
    assert sorted(gpu_run.gpus) == [0, 1] and len(gpu_run.steps) == 100


def test_a_resume_drops_the_steps_and_evals_it_trained_again():
    events = [Step(step=s, epoch=0.0, loss=float(s), lr=0.1) for s in range(1, 6)]
    events += [Eval(step=2, epoch=0.0, eval_loss=1.0, perplexity=2.7), Eval(step=4, epoch=0.0, eval_loss=1.0,
                                                                          perplexity=2.7)]
    events += [RunStarted(run_id="r", config={}, resumed_from_step=2)]  # killed at 5, last good checkpoint 2
    events += [Step(step=s, epoch=0.0, loss=10.0 + s, lr=0.1) for s in range(3, 7)]
    history = one_by_one(events)
    assert list(zip(history.steps["step"], history.steps["loss"], strict=True)) == \
        [(1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0), (5, 15.0), (6, 16.0)]
    assert [e.step for e in history.evals] == [2]


def test_eta_comes_from_the_recent_pace():
    history = RunHistory()
    history.add(RunStarted(run_id="r", config={}, total_steps=100, t=0.0))
    for step in range(1, 11):
        history.add(Step(step=step, epoch=0.0, loss=1.0, lr=0.0, t=2.0 * step))
    assert history.eta() == 2.0 * 90
    history.add(RunFinished(status="stopped", t=30.0))
    assert history.eta() is None and history.elapsed(now=99.0) == 30.0


def test_downsampling_keeps_every_spike_and_few_points():
    xs = [float(i) for i in range(100_000)]
    ys = [1.0] * 100_000
    ys[31_337] = 50.0
    ys[77_777] = -3.0
    ys[5] = math.nan
    from array import array

    out_x, out_y = downsample(array("d", xs), array("d", ys), 200)
    assert len(out_x) <= 400
    assert 50.0 in out_y and -3.0 in out_y and out_x[out_y.index(50.0)] == 31_337
    assert not any(math.isnan(y) for y in out_y)
    mean_x, mean_y = bucket_means(array("d", xs), array("d", ys), 200)
    assert len(mean_y) == 200 and all(math.isfinite(y) for y in mean_y)
    assert smooth([1.0, math.nan, 1.0]) == [1.0, 1.0, 1.0]
