"""Structural lint: rows that are not valid samples, empty turns, and roles out of order."""

from __future__ import annotations

from collections.abc import Iterable

from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.loading import untrainable_reason
from tunedeck.core.data.records import Problem
from tunedeck.core.data.tool_format import FALLBACK_NOTE
from tunedeck.core.inspect.report import Finding


def schema_findings(problems: Iterable[Problem]) -> list[Finding]:
    """Rows the loader could not turn into a conversation: bad JSON, missing columns, wrong types."""
    out = []
    for problem in problems:
        if problem.message.startswith("invalid JSON"):
            fix = "fix the JSON on this line (one object per line)"
        elif problem.message.startswith("missing column"):
            fix = "add the column, or map the file's columns with --dataset-info"
        else:
            fix = "make the row match its format"
        out.append(Finding("schema", "error", problem.row, problem.line, f"{problem.message}; row skipped", fix))
    return out


_UNSET = object()


def conversation_findings(conv: Conversation, reason: str | None | object = _UNSET) -> list[Finding]:
    """Empty turns and role-order problems of one conversation; errors for what training would drop.
    `reason` is untrainable_reason(conv) when the caller has it already."""
    if reason is _UNSET:
        reason = untrainable_reason(conv)
    out = _empty_turns(conv, reason)
    out += _role_order(conv)
    if reason and not any(f.severity == "error" for f in out):
        out.append(Finding("role_order", "error", conv.row, conv.line, f"{reason}; training skips this row",
                           "give the row a user turn followed by a non-empty assistant answer"))
    return out


def _empty_turns(conv: Conversation, reason: str | None) -> list[Finding]:
    out = []
    messages = conv.messages
    last_assistant = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    for number, message in enumerate(messages, start=1):
        if message.content.strip() or message.tool_calls:
            continue
        fatal = (number - 1 == last_assistant and reason == "the assistant answer is empty") or (
            message.role == "user" and reason == "no user turn with text")
        what = "whitespace-only" if message.content else "empty"
        out.append(Finding("empty_turn", "error" if fatal else "warning", conv.row, conv.line,
                           f"turn {number} ({message.role}) is {what}" + ("; training skips this row" if fatal else ""),
                           f"write the {message.role} turn or remove it"))
    return out


def _role_order(conv: Conversation) -> list[Finding]:
    """Expected: [system] user assistant (user assistant)*, with tool results only after an assistant's call."""
    roles = [m.role for m in conv.messages]
    problems: list[tuple[str, str]] = []
    body = roles[1:] if roles and roles[0] == "system" else roles
    if "system" in body:
        problems.append(("warning", f"a system turn at turn {roles.index('system', 1) + 1}, not first"))
    turns = [r for r in body if r != "system"]
    if "assistant" not in turns:
        problems.append(("error", "no assistant turn: nothing to learn; training skips this row"))
    elif turns and turns[0] != "user":
        article = "an" if turns[0][0] in "aeiou" else "a"
        problems.append(("warning", f"starts with {article} {turns[0]} turn instead of a user turn"))
    previous = None
    for number, role in enumerate(roles, start=1):
        if role == "tool" and previous not in ("assistant", "tool"):
            problems.append(("warning", f"turn {number}: a tool result that follows no assistant call"))
        elif role == previous and role in ("user", "assistant") and not conv.messages[number - 2].tool_calls:
            problems.append(("warning", f"turns {number - 1} and {number}: two {role} turns in a row"))
        previous = role
    if turns and turns[-1] != "assistant" and "assistant" in turns:
        problems.append(("warning", f"ends with a {turns[-1]} turn that is never answered (not trained)"))
    fix = "reorder the turns: [system] user, assistant, user, assistant, ..."
    return [Finding("role_order", severity, conv.row, conv.line, message, fix) for severity, message in problems]


def tool_format_findings(conv: Conversation, lacks: list[str], template: str) -> list[Finding]:
    """A warning when the chat template cannot show the row's tools or tool calls (the fallback form carries them)."""
    if not lacks:
        return []
    return [Finding("tool_format", "warning", conv.row, conv.line,
                    f"the chat template ({template}) cannot show {' and '.join(lacks)}: {FALLBACK_NOTE}",
                    "a template with tool support renders them natively: --template qwen")]
