"""What an inspection found: the summary, per-sample token lengths and the findings, each tied to its row."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]

# Finding kinds, stable strings (the CLI's --json output and the TUI's filters use them).
KINDS = (
    "schema",            # a row that is not a valid sample of its format (bad JSON, missing field, wrong type)
    "empty_turn",        # an empty or whitespace-only message
    "role_order",        # roles out of order (two users in a row, starts with assistant, no assistant at all, ...)
    "truncated",         # longer than the cutoff after the chat template: the tail is cut away
    "assistant_lost",    # so long that every assistant (trained) token falls past the cutoff: nothing is learned
    "duplicate",         # the same sample as an earlier row
    "near_duplicate",    # nearly the same sample as an earlier row (MinHash LSH)
    "conflict",          # the same prompt as an earlier row with a different answer
    "encoding",          # mojibake (double-encoded UTF-8 and the like); ftfy's repair is in `fix`
    "pii",               # an email, phone number, IP address or ID-card number
    "json_invalid",      # an assistant answer that must be JSON but does not parse
    "tool_format",       # tools / tool calls the chat template cannot show, trained in the fallback form
    "placeholder",       # a {{word}} template placeholder left in the text (fill it with data.placeholders)
    "control_chars",     # control characters, NUL, zero-width or bidi controls in the text
)


@dataclass(slots=True)
class Finding:
    """One problem on one row. `row` is the 0-based row index; `line` the 1-based file line where there is one."""

    kind: str
    severity: Severity
    row: int
    line: int | None
    message: str
    fix: str | None = None           # what to do, or the repaired text for encoding findings
    other_row: int | None = None     # the earlier row a duplicate / conflict refers to

    def where(self, source: str) -> str:
        return f"{source}:{self.line}" if self.line else f"{source} row {self.row}"


@dataclass(slots=True)
class LengthStats:
    """Token lengths of every sample as the run will see it: real tokenizer, the run's chat template."""

    lengths: list[int]               # per sample, in sample order, before truncation
    trained: list[int]               # assistant (trained) tokens per sample that survive the cutoff
    cutoff: int
    over_cutoff: int                 # samples longer than the cutoff
    assistant_lost: int              # samples whose every assistant token falls past the cutoff
    rows: list[int] = field(default_factory=list)  # the row of each sample (lengths[i] is row rows[i])
    assistant: list[int] = field(default_factory=list)  # assistant (trained) tokens per sample before the cutoff

    def keeping(self, share: float) -> int:
        """The smallest cutoff that keeps `share` of the samples whole (a measured percentile of the lengths)."""
        ordered = sorted(self.lengths)
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else self.cutoff

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.lengths)
        if not ordered:
            return {"count": 0, "cutoff": self.cutoff, "over_cutoff": 0, "assistant_lost": 0}

        def pct(p: float) -> int:
            return ordered[min(len(ordered) - 1, int(p * (len(ordered) - 1) + 0.5))]

        lost = sum(self.assistant) - sum(self.trained) if self.assistant else None
        return {"count": len(ordered), "min": ordered[0], "mean": round(sum(ordered) / len(ordered), 1),
                "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": ordered[-1], "total": sum(ordered),
                "cutoff": self.cutoff, "over_cutoff": self.over_cutoff, "assistant_lost": self.assistant_lost,
                "answer_tokens": sum(self.assistant) if self.assistant else None, "answer_tokens_lost": lost,
                "cutoff_keeps_95": self.keeping(0.95), "cutoff_keeps_99": self.keeping(0.99)}


@dataclass
class InspectReport:
    """Everything `tunedeck data inspect` prints and the inspection screen shows."""

    source: str                      # the file or folder inspected
    format: str                      # alpaca | sharegpt | openai | text | markdown
    rows: int                        # rows read from the file (samples for text corpora)
    samples: int                     # rows that became a trainable conversation
    template: str                    # the chat template the lengths were measured with
    lengths: LengthStats | None
    findings: list[Finding] = field(default_factory=list)
    roles: dict[str, int] = field(default_factory=dict)   # message count per role
    placeholders: dict[str, int] = field(default_factory=dict)  # {{name}} left in the text: rows per name
    layout: str = ""                 # how a text corpus was read: one document per line, paragraphs, Markdown

    def counts(self) -> dict[str, int]:
        """Findings per kind, in KINDS order, kinds with no finding left out."""
        out: dict[str, int] = {}
        for kind in KINDS:
            n = sum(1 for f in self.findings if f.kind == kind)
            if n:
                out[kind] = n
        return out

    def for_row(self, row: int) -> list[Finding]:
        return [f for f in self.findings if f.row == row]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "rows": self.rows, "samples": self.samples,
                "template": self.template, "roles": self.roles, "layout": self.layout,
                "placeholders": self.placeholders,
                "lengths": self.lengths.summary() if self.lengths else None,
                "counts": self.counts(), "findings": [asdict(f) for f in self.findings]}

    @classmethod
    def from_json(cls, data: dict[str, Any], lengths: list[int] | None = None, trained: list[int] | None = None,
                  assistant: list[int] | None = None) -> InspectReport:
        """The report back from to_json(); the per-sample lengths travel beside it (to_json keeps their summary)."""
        stats = data.get("lengths")
        length_stats = None if stats is None else LengthStats(
            list(lengths or []), list(trained or []), stats["cutoff"], stats["over_cutoff"], stats["assistant_lost"],
            assistant=list(assistant or []))
        return cls(data["source"], data["format"], data["rows"], data["samples"], data["template"], length_stats,
                   [Finding(**finding) for finding in data.get("findings") or []], dict(data.get("roles") or {}),
                   dict(data.get("placeholders") or {}), data.get("layout") or "")
