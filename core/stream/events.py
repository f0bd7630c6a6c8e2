"""The versioned JSON-lines event stream: typed events, a flushing writer and a tolerant line parser."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

SCHEMA_VERSION = 2  # 2: host RAM is a `host` event, no longer part of `gpu` readings


@dataclass(slots=True)
class Event:
    type: ClassVar[str] = ""
    t: float = field(default_factory=time.time, kw_only=True)
    v: int = field(default=SCHEMA_VERSION, kw_only=True)

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps({"v": data.pop("v"), "t": data.pop("t"), "type": self.type, **data}, ensure_ascii=False)


@dataclass(slots=True)
class RunStarted(Event):
    type: ClassVar[str] = "run_started"
    run_id: str
    config: dict[str, Any]
    world_size: int = 1
    hardware: dict[str, Any] = field(default_factory=dict)
    precision: str = ""
    total_steps: int = 0
    num_epochs: float = 0.0
    train_samples: int = 0
    eval_samples: int = 0
    resumed_from_step: int = 0


@dataclass(slots=True)
class Step(Event):
    type: ClassVar[str] = "step"
    step: int
    epoch: float
    loss: float
    lr: float
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    total_steps: int | None = None


@dataclass(slots=True)
class Eval(Event):
    type: ClassVar[str] = "eval"
    step: int
    epoch: float
    eval_loss: float
    perplexity: float


@dataclass(slots=True)
class Gpu(Event):
    """One GPU's reading."""

    type: ClassVar[str] = "gpu"
    index: int
    name: str
    mem_used: int  # bytes
    mem_total: int  # bytes
    util: float | None = None  # percent
    temp: float | None = None  # degrees Celsius
    power: float | None = None  # watts
    node: int | None = None  # which node of a multi-node run read it; None on a single machine


@dataclass(slots=True)
class Host(Event):
    """The machine's RAM, sampled next to the GPU readings (also where no GPU can be read)."""

    type: ClassVar[str] = "host"
    ram_used: int  # bytes other programs cannot have
    ram_total: int  # bytes
    node: int | None = None  # which node of a multi-node run read it; None on a single machine


@dataclass(slots=True)
class Checkpoint(Event):
    type: ClassVar[str] = "checkpoint"
    step: int
    path: str
    eval_loss: float | None = None


@dataclass(slots=True)
class Log(Event):
    type: ClassVar[str] = "log"
    level: str
    message: str


@dataclass(slots=True)
class Error(Event):
    type: ClassVar[str] = "error"
    kind: str  # oom | data | config | model | crash
    message: str
    hints: list[str] = field(default_factory=list)
    step: int | None = None
    memory: dict[str, Any] | None = None  # at the time: per-GPU allocated/reserved/peak/total, host RSS
    suggestions: list[dict[str, Any]] = field(default_factory=list)  # {"set": {key: value}, "why", "estimate_gib"}


@dataclass(slots=True)
class Sample(Event):
    """One prompt answered by the base and the fine-tuned model at the end of training."""

    type: ClassVar[str] = "sample"
    prompt: str
    base: str
    tuned: str


@dataclass(slots=True)
class RunFinished(Event):
    type: ClassVar[str] = "run_finished"
    status: str  # completed | failed | stopped
    best_checkpoint: str | None = None
    final_step: int = 0
    adapter: str | None = None
    message: str = ""
    train_seconds: float | None = None  # wall time inside the training loop
    train_tokens: int | None = None  # real (non-padding) tokens trained on
    peak_memory: int | None = None  # bytes: peak GPU allocation, or peak host RSS on CPU


@dataclass(slots=True)
class ExportStarted(Event):
    """An export of a run began: which adapter, and the steps it will go through."""

    type: ClassVar[str] = "export_started"
    run_id: str
    checkpoint: str
    adapter: str
    steps: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ExportStep(Event):
    """One export step changed state: started, done, skipped (already complete) or failed."""

    type: ClassVar[str] = "export_step"
    step: str
    state: str  # started | done | skipped | failed
    message: str = ""
    seconds: float | None = None
    outputs: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ExportProgress(Event):
    """Progress inside a long export step (0..1)."""

    type: ClassVar[str] = "export_progress"
    step: str
    fraction: float
    message: str = ""


@dataclass(slots=True)
class ExportCheck(Event):
    """The outcome of one self-check; passed is None when the check could not run here (e.g. no ollama)."""

    type: ClassVar[str] = "export_check"
    name: str  # template | stop | quality | ollama
    target: str  # the quant or model checked
    passed: bool | None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ExportFinished(Event):
    type: ClassVar[str] = "export_finished"
    status: str  # completed | failed | stopped
    report: str | None = None
    message: str = ""


@dataclass(slots=True)
class EvalStarted(Event):
    """A batch evaluation of a run began: its held-out rows and the phases it will go through."""

    type: ClassVar[str] = "eval_started"
    run_id: str
    source: str  # where the held-out rows come from
    rows: int
    phases: list[str] = field(default_factory=list)  # e.g. loss, generate, base_loss, base_generate
    adapter: str = ""


@dataclass(slots=True)
class EvalProgress(Event):
    """Rows done in one phase of a batch evaluation."""

    type: ClassVar[str] = "eval_progress"
    phase: str
    done: int
    total: int
    message: str = ""


@dataclass(slots=True)
class EvalFinished(Event):
    type: ClassVar[str] = "eval_finished"
    status: str  # completed | failed | stopped
    metrics: str | None = None  # path of metrics.json
    message: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (RunStarted, Step, Eval, Gpu, Host, Checkpoint, Log, Error, Sample, RunFinished,
                              ExportStarted, ExportStep, ExportProgress, ExportCheck, ExportFinished,
                              EvalStarted, EvalProgress, EvalFinished)
}
_FIELDS = {name: {f.name for f in fields(cls)} for name, cls in EVENT_TYPES.items()}


def parse_line(line: str | bytes) -> list[Event]:
    """The typed events of one line: none for a blank, broken or unknown line (newer writers may add types), else
    one, or two for a version-1 `gpu` line that also carried host RAM (a Gpu and a Host reading)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return []
    if not isinstance(data, dict):
        return []
    if data.get("type") == "gpu" and data.get("v") == 1:
        return _gpu_v1(data)
    event = _typed(data)
    return [] if event is None else [event]


def _typed(data: dict[str, Any]) -> Event | None:
    kind = data.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None
    known = _FIELDS[kind]
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError:  # a required field is missing
        return None


def _gpu_v1(data: dict[str, Any]) -> list[Event]:
    """Version 1 put host RAM on every `gpu` reading, and wrote index -1 ("host") where no GPU could be read."""
    events: list[Event] = []
    index = data.get("index")
    if not isinstance(index, int) or index >= 0:
        event = _typed(data)
        events += [event] if event is not None else []
    if data.get("host_ram_total"):
        host = {"v": 1, "type": "host", "ram_used": data.get("host_ram_used") or 0,
                "ram_total": data["host_ram_total"], "node": data.get("node")}
        event = _typed({**host, "t": data["t"]} if "t" in data else host)
        events += [event] if event is not None else []
    return events


def read_events(path: str | Path) -> Iterator[Event]:
    """Every complete event in a file, in order."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.endswith("\n"):
                yield from parse_line(line)


class EventWriter:
    """Appends events to a file, one flushed line each; safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()  # re-entrant: a stop-signal handler may emit while its thread is in emit()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self._handle = os.fdopen(fd, "a", encoding="utf-8")
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a writer died mid-line: end it, so the next event
            os.write(fd, b"\n")                             # starts a line of its own (readers skip the torn one)

    def emit(self, event: Event) -> Event:
        line = memoryview((event.to_json() + "\n").encode("utf-8"))
        with self._lock:  # one write call per line: another process appending never lands inside it
            while line:
                line = line[os.write(self._handle.fileno(), line):]
        return event

    def close(self) -> None:
        with self._lock:
            self._handle.close()
