"""The one conversation model every dataset format is normalized to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


@dataclass(slots=True)
class Message:
    role: str
    content: str
    tool_calls: list[dict[str, Any]] | None = None

    def to_chat(self) -> dict[str, Any]:
        """The dict shape chat templates expect."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = self.tool_calls
        return out


@dataclass(slots=True)
class Conversation:
    """One training sample: its messages plus where it came from (row index, file line)."""

    messages: list[Message]
    row: int
    line: int | None = None
    tools: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_chat(self) -> list[dict[str, Any]]:
        return [m.to_chat() for m in self.messages]

    def with_system(self, system: str | None) -> Conversation:
        """A copy that opens with `system` unless it already has a system message."""
        if not system or "text" in self.meta or (self.messages and self.messages[0].role == "system"):
            return self
        return Conversation([Message("system", system), *self.messages], self.row, self.line, self.tools, self.meta)

    def where(self, source: str) -> str:
        return f"{source}:{self.line}" if self.line else f"{source} row {self.row}"

    def key(self) -> str:
        """Stable text identity, used for hashing into splits."""
        if "text" in self.meta:  # continued-pretraining text has no messages
            return f"text\x1f{self.meta['text']}"
        return "\x1e".join(f"{m.role}\x1f{m.content}" for m in self.messages)
