"""Run history and watching: the fast replay equals event-by-event parsing, follows appends, survives odd files."""

from __future__ import annotations

import math
from pathlib import Path

from tunedeck.core.stream.events import Checkpoint, Eval, EventWriter, Gpu, Log, RunFinished, RunStarted, Step
from tunedeck.core.stream.history import GPU_HISTORY, RunHistory, bucket_means, downsample, smooth
from tunedeck.core.stream.tail import LogTail, RunWatcher

GIB = 1 << 30


def write_run(path: Path, steps: int = 400, gpus: int = 2, resume_at: int | None = None) -> list:
    writer = EventWriter(path)
    events = [Log(level="info", message="loading model", t=1.0),
              RunStarted(run_id="r", config={}, total_steps=steps, num_epochs=2.0, t=2.0)]
    for step in range(1, steps + 1):
        t = 2.0 + step
        events.append(Step(step=step, epoch=step / (steps / 2), loss=3.0 / step, lr=1e-4, t=t, total_steps=steps,
                           grad_norm=None if step % 7 == 0 else 1.5, tokens_per_s=None if step == 1 else 900.5))
        events.extend(Gpu(index=i, name="MI50", mem_used=(20 + i) * GIB + step, mem_total=32 * GIB, util=90.0,
                          host_ram_used=8 * GIB, host_ram_total=64 * GIB, t=t) for i in range(gpus))
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
    replayed = RunWatcher(path).replay()
    assert_same(replayed, one_by_one(events))
    assert len(replayed.steps) == 400 and math.isnan(replayed.steps["grad_norm"][6])
    assert all(len(readings) == GPU_HISTORY for readings in replayed.gpus.values())
    assert replayed.best_eval().eval_loss == 5.0 / 400
    assert replayed.total_steps == 400


def test_replay_takes_the_slow_path_for_odd_lines_and_resumes(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    events = write_run(path, steps=300, resume_at=150)
    resumed = RunWatcher(path).replay()
    assert_same(resumed, one_by_one(events))
    assert resumed.steps["step"][150] == 151 and resumed.steps["loss"][150] == 9.0  # replayed steps replaced
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\nnot json\n{\"v\": 1, \"t\": 5.0, \"type\": \"future_type\"}\n")
    assert_same(RunWatcher(path).replay(), one_by_one(events))


def test_watcher_follows_appended_events_and_waits_for_whole_lines(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.emit(Step(step=1, epoch=0.1, loss=2.0, lr=1e-3, t=1.0))
    watcher = RunWatcher(path)
    assert len(watcher.replay().steps) == 1
    line = Step(step=2, epoch=0.2, loss=1.5, lr=1e-3, t=2.0).to_json()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line[:20])
        handle.flush()
        assert watcher.poll() == []
        handle.write(line[20:] + "\n")
    [event] = watcher.poll()
    assert event.step == 2 and watcher.history.steps.last.loss == 1.5
    assert list(watcher.history.steps["step"]) == [1.0, 2.0]


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


def test_log_tail_starts_near_the_end_and_follows(tmp_path: Path):
    path = tmp_path / "worker.log"
    path.write_text("".join(f"line {i}\n" for i in range(10_000)))
    tail = LogTail(path, first_bytes=100)
    first = tail.poll()
    assert first[-1] == "line 9999" and len(first) < 20 and all(line.startswith("line ") for line in first)
    with open(path, "a") as handle:
        handle.write("new line\nhalf")
    assert tail.poll() == ["new line"]
