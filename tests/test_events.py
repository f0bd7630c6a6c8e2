"""The event stream: every type round-trips, readers skip what they do not know and still read version 1."""

from __future__ import annotations

import json
from pathlib import Path

from tunedeck.core.stream.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    Checkpoint,
    Error,
    Eval,
    EvalFinished,
    EvalProgress,
    EvalStarted,
    EventWriter,
    ExportCheck,
    ExportFinished,
    ExportProgress,
    ExportStarted,
    ExportStep,
    Gpu,
    Host,
    Log,
    RunFinished,
    RunStarted,
    Sample,
    Step,
    parse_line,
    read_events,
)

EXAMPLES = [
    RunStarted(run_id="r1", config={"lora": {"r": 8}}, world_size=2, hardware={"gpus": []}, precision="bf16",
               total_steps=30, num_epochs=3.0, train_samples=73, eval_samples=7),
    Step(step=1, epoch=0.1, loss=2.5, lr=1e-4, grad_norm=1.5, tokens_per_s=812.0, samples_per_s=3.0,
         total_steps=30),
    Eval(step=10, epoch=1.0, eval_loss=1.2, perplexity=3.32),
    Gpu(index=0, name="AMD Instinct MI50", mem_used=10 << 30, mem_total=32 << 30, util=97.0, temp=70.0,
        power=210.0),
    Host(ram_used=8 << 30, ram_total=64 << 30),
    Checkpoint(step=10, path="checkpoints/checkpoint-10", eval_loss=1.2),
    Log(level="warning", message="3 rows skipped: données"),
    Error(kind="oom", message="out of memory", hints=["lower train.batch_size"], step=12),
    Sample(prompt="Who are you?", base="SmolLM", tuned="tunedeck's demo assistant"),
    RunFinished(status="completed", best_checkpoint="checkpoints/checkpoint-20", final_step=30, adapter="adapter"),
    ExportStarted(run_id="r1", checkpoint="checkpoint-30", adapter="checkpoints/checkpoint-30",
                  steps=["merge", "gguf"], options={"quantizations": ["Q8_0"]}),
    ExportStep(step="gguf", state="done", message="r1-f16.gguf, 258.3 MiB", seconds=11.3, outputs=["r1-f16.gguf"]),
    ExportProgress(step="gguf", fraction=0.7, message="writing GGUF"),
    ExportCheck(name="stop", target="Q8_0", passed=True, message="stopped on <|im_end|>", details={"new_tokens": 20}),
    ExportFinished(status="completed", report="export/report.json", message="every check passed"),
    EvalStarted(run_id="r1", source="validation split of demo.json", rows=7, phases=["loss", "generate"],
                adapter="adapter"),
    EvalProgress(phase="generate", done=4, total=7),
    EvalFinished(status="completed", metrics="eval/metrics.json", message="7 rows"),
]


def test_every_event_type_has_an_example():
    assert {type(e).type for e in EXAMPLES} == set(EVENT_TYPES)


def test_events_round_trip_through_a_file(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    for event in EXAMPLES:
        writer.emit(event)
    writer.close()
    assert list(read_events(path)) == EXAMPLES
    for line in path.read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        assert data["v"] == SCHEMA_VERSION
        assert isinstance(data["t"], float)
        assert data["type"] in EVENT_TYPES


def test_readers_skip_unknown_types_broken_lines_and_extra_fields(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    lines = [
        json.dumps({"v": 2, "t": 1.0, "type": "future_thing", "x": 1}),
        "not json at all",
        json.dumps([1, 2]),
        json.dumps({"v": 1, "t": 2.0, "type": "step", "step": 3}),  # missing required fields
        json.dumps({"v": 1, "t": 3.0, "type": "log", "level": "info", "message": "hi", "new_field": True}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert list(read_events(path)) == [Log(level="info", message="hi", t=3.0, v=1)]
    assert parse_line("") == [] and parse_line(b"\xff\xfe") == []


def test_version_1_gpu_lines_still_read_with_host_ram_as_host_readings(tmp_path: Path):
    """Version 1 put host RAM on every `gpu` reading and wrote index -1 ("host") where no GPU could be read."""
    path = tmp_path / "events.jsonl"
    lines = [
        {"v": 1, "t": 1.0, "type": "gpu", "index": 0, "name": "AMD Instinct MI50", "mem_used": 10 << 30,
         "mem_total": 32 << 30, "util": 97.0, "temp": 70.0, "power": 210.0, "host_ram_used": 8 << 30,
         "host_ram_total": 64 << 30, "node": 1},
        {"v": 1, "t": 2.0, "type": "gpu", "index": -1, "name": "host", "mem_used": 0, "mem_total": 0, "util": None,
         "temp": None, "power": None, "host_ram_used": 3 << 30, "host_ram_total": 24 << 30, "node": None},
        {"v": 1, "t": 3.0, "type": "gpu", "index": 1, "name": "MI50", "mem_used": 1, "mem_total": 2},
        {"v": 1, "t": 4.0, "type": "gpu", "index": -1, "name": "host", "mem_used": 0, "mem_total": 0},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert list(read_events(path)) == [
        Gpu(index=0, name="AMD Instinct MI50", mem_used=10 << 30, mem_total=32 << 30, util=97.0, temp=70.0,
            power=210.0, node=1, t=1.0, v=1),
        Host(ram_used=8 << 30, ram_total=64 << 30, node=1, t=1.0, v=1),
        Host(ram_used=3 << 30, ram_total=24 << 30, t=2.0, v=1),
        Gpu(index=1, name="MI50", mem_used=1, mem_total=2, t=3.0, v=1),
    ]
    # Version 2 writes host RAM only as `host` events: a v2 `gpu` line never turns into two readings.
    assert parse_line(Gpu(index=0, name="x", mem_used=1, mem_total=2, t=5.0).to_json()) == \
        [Gpu(index=0, name="x", mem_used=1, mem_total=2, t=5.0)]
    assert '"host_ram' not in Gpu(index=0, name="x", mem_used=1, mem_total=2).to_json()


def test_a_torn_last_line_does_not_swallow_the_next_event(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    torn = '{"v": 1, "t": 1.0, "type": "step", "st'  # its writer died here
    path.write_text(Log(level="info", message="before").to_json() + "\n" + torn, encoding="utf-8")
    writer = EventWriter(path)
    after = writer.emit(Log(level="info", message="after"))
    writer.close()
    assert path.read_text(encoding="utf-8").splitlines()[1:] == [torn, after.to_json()]
    assert [e.message for e in read_events(path)] == ["before", "after"]
    EventWriter(path).close()  # a whole last line is left as it is
    assert path.read_text(encoding="utf-8").count("\n") == 3
