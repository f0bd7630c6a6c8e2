"""A run's history as a live view needs it: exact step series, evals, latest GPU readings, logs, outcome."""

from __future__ import annotations

import math
import re
from array import array
from collections import deque
from dataclasses import dataclass, field, fields

from tunedeck.core.stream.events import (
    Checkpoint,
    Error,
    Eval,
    Event,
    Gpu,
    Host,
    Log,
    RunFinished,
    RunStarted,
    Sample,
    Step,
    parse_line,
)

GPU_HISTORY = 300  # readings kept per GPU (about five minutes at one a second)
LOG_HISTORY = 500
MAX_GPUS = 64
SMOOTHING = 0.9  # weight of the exponential moving average drawn over the raw loss
ETA_WINDOW = 50  # steps used to estimate the time per step

# Step fields in the order Step declares them (the writer's key order); the drawn ones are kept as columns.
STEP_FIELDS = [f.name for f in fields(Step) if f.name not in ("t", "v")]
COLUMNS = ("t", "step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s")  # in the writer's key order
STEP_VERSIONS = (1, 2)  # the schema versions whose `step` lines have this layout


def _step_line_pattern() -> re.Pattern[bytes]:
    """One complete `step` line as EventWriter writes it, built from Step's fields; captures COLUMNS in order."""
    def value(name: str) -> str:
        return "([^,}\\n]+)" if name in COLUMNS else "(?:[^,}\\n]+)"

    fields_part = "".join(f', "{name}": {value(name)}' for name in STEP_FIELDS)
    versions = "|".join(map(str, STEP_VERSIONS))
    return re.compile(f'\\n\\{{"v": (?:{versions}), "t": {value("t")}, "type": "step"{fields_part}\\}}(?=\\n)'
                      .encode())


STEP_LINE = _step_line_pattern()
STEP_MARK = b', "type": "step", '
GPU_MARK = b', "type": "gpu", '
HOST_MARK = b', "type": "host", '
GPU_INDEX = re.compile(rb'"index": (-?\d+)')
OTHER_TYPE = re.compile(rb'"type": "(?!step"|gpu"|host")')


class StepSeries:
    """Every step event as columns of floats (missing values are NaN) and the last step, exactly.

    Columns loaded from a whole file stay raw bytes until first read, so opening a long run converts
    only the columns that are drawn.
    """

    def __init__(self) -> None:
        self._columns: dict[str, array] = {name: array("d") for name in COLUMNS}
        self._raw: dict[str, tuple[bytes, ...]] = {}
        self.last: Step | None = None
        self.recent: deque[tuple[float, float]] = deque(maxlen=ETA_WINDOW + 1)  # (step, t)

    def __len__(self) -> int:
        return len(self["step"])

    def __getitem__(self, name: str) -> array:
        raw = self._raw.pop(name, None)
        if raw is not None:
            self._columns[name].extend(map(float, raw))
        return self._columns[name]

    def append(self, step: Step) -> None:
        for name in COLUMNS:
            value = getattr(step, name)
            self[name].append(math.nan if value is None else float(value))
        self.last = step
        self.recent.append((float(step.step), step.t))

    def extend(self, rows: list[tuple[bytes, ...]], last: Step) -> None:
        """Fill an empty series from rows of raw JSON numbers in COLUMNS order (null already turned into NaN)."""
        if len(self):
            raise ValueError("extend() only fills an empty series")
        if not rows:
            return
        self._raw = dict(zip(COLUMNS, zip(*rows, strict=True), strict=True))
        self["step"]  # noqa: B018 - converts now: a value that is not a number fails here, not on first draw
        self.recent.extend((float(row[1]), float(row[0])) for row in rows[-ETA_WINDOW - 1:])
        self.last = last

    def truncate_after(self, step: int) -> None:
        """Forget steps after `step` (a resumed run replays them)."""
        steps = self["step"]
        keep = len(steps)
        while keep and steps[keep - 1] > step:
            keep -= 1
        for name in COLUMNS:
            del self[name][keep:]
        self.recent = deque(((s, t) for s, t in self.recent if s <= step), maxlen=ETA_WINDOW + 1)
        if self.last is not None and self.last.step > step:
            self.last = None


@dataclass
class RunHistory:
    """Everything known about a run from its events, updated one event (or one whole file) at a time.

    A resume from step k drops the steps and evals after k: after a kill -9 a run resumes from its last complete
    checkpoint, so the stream can hold steps that were trained again; the later ones are the run's real history.
    """

    steps: StepSeries = field(default_factory=StepSeries)
    started: RunStarted | None = None
    finished: RunFinished | None = None
    evals: list[Eval] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    logs: deque[Log] = field(default_factory=lambda: deque(maxlen=LOG_HISTORY))
    gpus: dict[int, deque[Gpu]] = field(default_factory=dict)
    host: Host | None = None  # the latest host RAM reading
    first_t: float | None = None
    last_t: float | None = None

    def add(self, event: Event) -> None:
        self._seen(event.t)
        if isinstance(event, Step):
            self.steps.append(event)
        elif isinstance(event, Gpu):
            self.gpus.setdefault(event.index, deque(maxlen=GPU_HISTORY)).append(event)
        elif isinstance(event, Host):
            self.host = event
        elif isinstance(event, Eval):
            self.evals.append(event)
        elif isinstance(event, Log):
            self.logs.append(event)
        elif isinstance(event, RunStarted):
            self.started = event
            self.finished = None
            if event.resumed_from_step:
                self.steps.truncate_after(event.resumed_from_step)
                self.evals = [e for e in self.evals if e.step <= event.resumed_from_step]
        elif isinstance(event, Checkpoint):
            self.checkpoints.append(event)
        elif isinstance(event, Error):
            self.errors.append(event)
        elif isinstance(event, Sample):
            self.samples.append(event)
        elif isinstance(event, RunFinished):
            self.finished = event

    def _seen(self, t: float) -> None:
        if self.first_t is None:
            self.first_t = t
        self.last_t = t if self.last_t is None else max(self.last_t, t)

    def load(self, data: bytes) -> None:
        """Add every event of a buffer of whole lines; fast for long runs, exact for every value."""
        if data and not data.endswith(b"\n"):
            data += b"\n"
        if not self._load_fast(data):
            for line in data.split(b"\n"):
                for event in parse_line(line):
                    self.add(event)

    def _load_fast(self, data: bytes) -> bool:
        """Columns straight from the bytes when every line has the writer's layout; False to go line by line."""
        if self.first_t is not None or len(self.steps) or not data:
            return False  # only a fresh history takes a whole file at once
        buffer = b"\n" + data
        step_rows = STEP_LINE.findall(buffer.replace(b": null", b": NaN"))
        if len(step_rows) != buffer.count(STEP_MARK):
            return False
        other_lines = _lines_matching(buffer, OTHER_TYPE)
        gpu_count, host_count = buffer.count(GPU_MARK), buffer.count(HOST_MARK)
        if len(step_rows) + gpu_count + host_count + len(other_lines) != buffer.count(b"\n") - 1:
            return False  # blank, broken or differently written lines: parse each one
        others = [event for line in other_lines for event in parse_line(line)]
        if any(isinstance(e, RunStarted) and e.resumed_from_step for e in others):
            return False  # a resume drops replayed steps, which needs the file's order
        if step_rows:
            last_step = parse_line(_last_lines(buffer, STEP_MARK, 1)[0])
            try:
                if len(last_step) != 1 or not isinstance(last_step[0], Step):
                    raise ValueError("the last step line does not parse")
                self.steps.extend(step_rows, last_step[0])
            except ValueError:  # a value that is not a number
                self.steps = StepSeries()
                return False
        self.first_t = _first_t(data)
        last_gpus = _last_gpu_lines(buffer, gpu_count)
        for line in [*other_lines, *last_gpus, *_last_lines(buffer, HOST_MARK, min(host_count, 1))]:
            for event in parse_line(line):
                self.add(event)
        if self.steps.last is not None:
            self._seen(self.steps.last.t)
        return True

    # What the live view shows -------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        last = self.steps.last
        if last is not None and last.total_steps:
            return last.total_steps
        return self.started.total_steps if self.started else 0

    def best_eval(self) -> Eval | None:
        return min(self.evals, key=lambda e: e.eval_loss) if self.evals else None

    def elapsed(self, now: float) -> float | None:
        end = self.finished.t if self.finished else now
        return end - self.first_t if self.first_t is not None else None

    def eta(self) -> float | None:
        """Seconds left, from the pace of the last ETA_WINDOW steps."""
        recent, total = self.steps.recent, self.total_steps
        if self.finished or len(recent) < 2 or not total:
            return None
        (first_step, first_t), (last_step, last_t) = recent[0], recent[-1]
        if last_step <= first_step:
            return None
        return (last_t - first_t) / (last_step - first_step) * max(0.0, total - last_step)


def _lines_matching(buffer: bytes, pattern: re.Pattern[bytes]) -> list[bytes]:
    """Each line (once) whose first `"type": ` key matches pattern."""
    lines = []
    last_start = -1
    for match in pattern.finditer(buffer):
        start = buffer.rfind(b"\n", 0, match.start()) + 1
        if start == last_start:
            continue
        line = buffer[start: buffer.find(b"\n", match.start())]
        if line.find(b'"type": ') == match.start() - start:
            lines.append(line)
            last_start = start
    return lines


def _last_lines(buffer: bytes, mark: bytes, count: int) -> list[bytes]:
    """The last `count` lines holding mark, oldest first."""
    lines: list[bytes] = []
    end = len(buffer)
    while len(lines) < count:
        at = buffer.rfind(mark, 0, end)
        if at < 0:
            break
        end = buffer.rfind(b"\n", 0, at) + 1
        lines.append(buffer[end: buffer.find(b"\n", at)])
    return lines[::-1]


def _last_gpu_lines(buffer: bytes, count: int) -> list[bytes]:
    """The most recent GPU_HISTORY readings of every GPU, read backwards from the end of the buffer."""
    newest = _last_lines(buffer, GPU_MARK, min(MAX_GPUS, count))
    indexes = {found.group(1) for found in map(GPU_INDEX.search, newest) if found}
    wanted = min(GPU_HISTORY * max(1, len(indexes)), count)
    return newest if wanted <= len(newest) else _last_lines(buffer, GPU_MARK, wanted)


def _first_t(data: bytes) -> float | None:
    """The time of the first line that holds an event."""
    start = 0
    while start < len(data):
        end = data.index(b"\n", start)
        events = parse_line(data[start:end])
        if events:
            return events[0].t
        start = end + 1
    return None


def downsample(xs: array, ys: array, buckets: int) -> tuple[list[float], list[float]]:
    """At most 2 * buckets points keeping each bucket's lowest and highest y, for drawing long series."""
    count = len(ys)
    if count <= 2 * buckets:
        pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    out_x: list[float] = []
    out_y: list[float] = []
    for bucket in range(buckets):
        start, end = count * bucket // buckets, count * (bucket + 1) // buckets
        chunk = ys[start:end]
        if math.isfinite(sum(chunk)):
            picks = {chunk.index(min(chunk)), chunk.index(max(chunk))}
        else:
            finite = [(y, i) for i, y in enumerate(chunk) if math.isfinite(y)]
            picks = {min(finite)[1], max(finite)[1]} if finite else set()
        for i in sorted(picks):
            out_x.append(xs[start + i])
            out_y.append(chunk[i])
    return out_x, out_y


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """A debiased exponential moving average (TensorBoard's smoothing); NaN and inf values are skipped."""
    out: list[float] = []
    ema = norm = 0.0
    for value in values:
        if math.isfinite(value):
            ema = weight * ema + (1 - weight) * value
            norm = weight * norm + (1 - weight)
        out.append(ema / norm if norm else math.nan)
    return out


def bucket_means(xs: array, ys: array, buckets: int) -> tuple[list[float], list[float]]:
    """The mean of each of `buckets` equal slices (x at the slice's middle); NaN slices are skipped."""
    count = len(ys)
    out_x: list[float] = []
    out_y: list[float] = []
    for bucket in range(min(buckets, count)):
        start, end = count * bucket // buckets, count * (bucket + 1) // buckets
        if end <= start:
            continue
        chunk = ys[start:end]
        total = sum(chunk)
        if not math.isfinite(total):
            finite = [y for y in chunk if math.isfinite(y)]
            if not finite:
                continue
            total, end_count = sum(finite), len(finite)
        else:
            end_count = len(chunk)
        out_x.append(xs[(start + end - 1) // 2])
        out_y.append(total / end_count)
    return out_x, out_y
