"""Template placeholders such as {{name}} in dataset text: find them, and fill them from data.placeholders."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from tunedeck.core.data.conversation import Conversation, Message
from tunedeck.core.errors import ConfigError

PLACEHOLDER = re.compile(r"\{\{\s*([^\W\d]\w*)\s*\}\}")


def find_placeholders(text: str) -> list[str]:
    """The names of the {{name}} placeholders in a text, in order, repeats included."""
    return PLACEHOLDER.findall(text) if "{{" in text else []


def fill_text(text: str, values: Mapping[str, str]) -> str:
    """The text with every {{name}} whose name has a value replaced by it; other placeholders stay."""
    if not values or "{{" not in text:
        return text
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), text)


def fill_placeholders(conv: Conversation, values: Mapping[str, str] | None) -> Conversation:
    """A copy of the conversation with its placeholders filled (the same object when there is nothing to fill)."""
    if not values:
        return conv
    if "text" in conv.meta:
        filled = fill_text(conv.meta["text"], values)
        return conv if filled == conv.meta["text"] else Conversation(
            [], conv.row, conv.line, conv.tools, {**conv.meta, "text": filled})
    messages = [Message(m.role, fill_text(m.content, values), m.tool_calls) for m in conv.messages]
    if all(new.content == old.content for new, old in zip(messages, conv.messages, strict=True)):
        return conv
    return Conversation(messages, conv.row, conv.line, conv.tools, conv.meta)


def parse_fill(items: Iterable[str]) -> dict[str, str]:
    """`--fill name=value` arguments as a dict; a bad one raises ConfigError naming it."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[^\W\d]\w*", name.strip()):
            raise ConfigError(f"bad --fill '{item}'", where="--fill",
                              hint="give NAME=VALUE for a {{NAME}} placeholder, e.g. --fill name=Tunedeck")
        values[name.strip()] = value
    return values
