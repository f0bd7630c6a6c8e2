"""The inspection worker's JSON lines as typed messages: the worker writes them, the app reads them back.

Protocol (stdout, one JSON object a line):
  {"type": "progress", "phase": "...", "done": n, "total": m}      while working, at most ~10 a second
  {"type": "report", "report": InspectReport.to_json(), "lengths": [...], "trained": [...], "assistant": [...]}
  {"type": "row", "row": n, "line": l, "where": "...", "tokens": t, "trained": k, "cutoff": c,
   "segments": [[text, trained, past_cutoff], ...], "task": ...}    one answer per request line {"row": n} on stdin
  {"type": "row", "row": n, "raw": "...", "problem": "..."}         a row that is not a conversation
  {"type": "error", "message": "...", "hint": "...", "row": n?}      fatal without "row"; the worker then exits 2
The worker ends when stdin closes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from tunedeck.core.inspect.report import InspectReport

Segment = tuple[str, bool, bool]  # text, trained, past the cutoff


@dataclass(frozen=True)
class Progress:
    TYPE: ClassVar[str] = "progress"
    phase: str
    done: int = 0
    total: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, **asdict(self)}


@dataclass(frozen=True)
class ReportReady:
    """The whole report, with every sample's token length (the histogram's data)."""

    TYPE: ClassVar[str] = "report"
    report: InspectReport

    def to_json(self) -> dict[str, Any]:
        lengths = self.report.lengths
        return {"type": self.TYPE, "report": self.report.to_json(),
                "lengths": lengths.lengths if lengths else [], "trained": lengths.trained if lengths else [],
                **({"assistant": lengths.assistant} if lengths and lengths.assistant else {})}


@dataclass(frozen=True)
class RowPreview:
    """A sample as training tokenizes it: the template applied, split into trained / masked / cut-off runs."""

    TYPE: ClassVar[str] = "row"
    row: int
    line: int | None
    where: str
    tokens: int
    trained: int  # trained tokens kept under the cutoff
    cutoff: int
    segments: tuple[Segment, ...]
    task: str | None = None  # for style_sft corpora: continue | expand

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "row": self.row, "line": self.line, "where": self.where, "tokens": self.tokens,
                "trained": self.trained, "cutoff": self.cutoff, "segments": [list(s) for s in self.segments],
                "task": self.task}


@dataclass(frozen=True)
class RawRow:
    """A row that is not a sample: what the file holds there, and why it is refused."""

    TYPE: ClassVar[str] = "row"
    row: int
    raw: str
    problem: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, **asdict(self)}


@dataclass(frozen=True)
class InspectError:
    """A failed row request (`row` set), or the inspection itself failing (`row` None: the worker exits)."""

    TYPE: ClassVar[str] = "error"
    message: str
    hint: str | None = None
    row: int | None = None

    @property
    def fatal(self) -> bool:
        return self.row is None

    def to_json(self) -> dict[str, Any]:
        data = {"type": self.TYPE, "message": self.message, "hint": self.hint}
        return data if self.row is None else {**data, "row": self.row}


InspectMessage = Progress | ReportReady | RowPreview | RawRow | InspectError


def parse_inspect_reply(data: dict[str, Any]) -> InspectMessage | None:
    """A worker line's object as its typed message; None for a type this side does not know.

    Raises ValueError for a known type with missing or malformed fields.
    """
    try:
        kind = data.get("type")
        if kind == "progress":
            return Progress(str(data.get("phase", "working")), int(data.get("done", 0)), int(data.get("total", 0)))
        if kind == "report":
            return ReportReady(InspectReport.from_json(data["report"], data.get("lengths"), data.get("trained"),
                                                       data.get("assistant")))
        if kind == "row" and "raw" in data:
            return RawRow(int(data["row"]), data["raw"] or "", str(data["problem"]))
        if kind == "row":
            segments = tuple((str(text), bool(trained), bool(past)) for text, trained, past in data["segments"])
            return RowPreview(int(data["row"]), data.get("line"), str(data["where"]), int(data["tokens"]),
                              int(data["trained"]), int(data["cutoff"]), segments, data.get("task"))
        if kind == "error":
            row = data.get("row")
            return InspectError(str(data["message"]), data.get("hint"), None if row is None else int(row))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed {kind} message: {exc!r}") from None
    return None
