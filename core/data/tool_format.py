"""Tools, tool calls and tool results for chat templates that cannot express them: the documented fallback form.

A template's support is probed by rendering: a tool list, an assistant tool call and a tool result each carry
a marker, and the template supports what its output shows. What a template cannot show is rewritten before it
renders, never dropped:
- the tool list goes into the system turn (a new one when the conversation has none), after a blank line:
  TOOLS_INTRO, one JSON schema a line, then TOOLS_OUTRO;
- each tool call becomes a line of the assistant turn, after its text: {"name": <name>, "arguments": <JSON>};
- a tool result the template drops becomes a user turn.
JSON is written compact, as Go's encoding/json writes it, so that an Ollama TEMPLATE reproduces the same text.
Training, inspection, evaluation and export all render through `for_template`, so they agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Render = Callable[[list[dict], Any, bool], str]  # (messages, tools, add_generation_prompt) -> text

TOOLS_INTRO = "# Tools\n\nYou may call one or more of these functions, given as JSON schemas, one a line:"
TOOLS_OUTRO = ("\n\nTo call a function, answer with a JSON object on a line of its own: "
               "{\"name\": <function-name>, \"arguments\": <args-json-object>}")
_PROBE_TOOL = {"type": "function", "function": {"name": "probe_tool_q7z", "description": "d",
                                                "parameters": {"type": "object", "properties": {}}}}
_PROBE_CALL = {"type": "function", "function": {"name": "probe_call_q7z", "arguments": {}}}
_PROBE_RESULT = "probe_result_q7z"


@dataclass(frozen=True)
class ToolSupport:
    """What a chat template renders natively: a tool list, assistant tool calls, tool results."""

    tools: bool
    calls: bool
    results: bool

    def lacks(self, messages: list[dict[str, Any]], tools: Any) -> list[str]:
        """What of this conversation the template cannot show itself (and the fallback form carries)."""
        out = []
        if tools and not self.tools:
            out.append("the tool list")
        calls = sum(len(m.get("tool_calls") or []) for m in messages)
        if calls and not self.calls:
            out.append(f"{calls} tool call{'s' if calls > 1 else ''}")
        results = sum(1 for m in messages if m["role"] == "tool")
        if results and not self.results:
            out.append(f"{results} tool result{'s' if results > 1 else ''}")
        return out


_SUPPORT: dict[str, ToolSupport] = {}  # per template text


def go_json(value: Any) -> str:
    """JSON as Go's json.Marshal writes it: compact, with <, >, &, U+2028 and U+2029 escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def tools_text(tools: list[dict[str, Any]]) -> str:
    """The tool list as the fallback form puts it in the system turn."""
    return TOOLS_INTRO + "".join("\n" + go_json(tool) for tool in tools) + TOOLS_OUTRO


def call_text(call: dict[str, Any]) -> str:
    """One tool call as a line of JSON text: {"name": <name>, "arguments": <arguments>}."""
    function = call.get("function", call)
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    return f'{{"name": "{function.get("name", "")}", "arguments": {go_json(arguments)}}}'


def calls_text(content: str, calls: list[dict[str, Any]]) -> str:
    """An assistant turn's text followed by its tool calls, one a line."""
    lines = [call_text(call) for call in calls]
    return "\n".join([content, *lines] if content else lines)


def _shows(render: Render, messages: list[dict], tools: Any, marker: str) -> bool:
    try:
        return marker in render(messages, tools, False)
    except Exception:  # noqa: BLE001 - templates refuse what they do not support in many ways
        return False


def probe(render: Render) -> ToolSupport:
    """Render a marked tool list, tool call and tool result; the template supports what shows in its output."""
    user = {"role": "user", "content": "hi"}
    call = {"role": "assistant", "content": "", "tool_calls": [_PROBE_CALL]}
    answer = {"role": "assistant", "content": "ok"}
    result = {"role": "tool", "content": _PROBE_RESULT}
    return ToolSupport(_shows(render, [user], [_PROBE_TOOL], "probe_tool_q7z"),
                       _shows(render, [user, call], None, "probe_call_q7z"),
                       _shows(render, [user, answer, result], None, _PROBE_RESULT))


def tool_support(render: Render, template: str | None) -> ToolSupport:
    """The probe's answer for a template, kept per template text."""
    if template is None:
        return probe(render)
    if template not in _SUPPORT:
        _SUPPORT[template] = probe(render)
    return _SUPPORT[template]


def uses_tools(messages: list[dict[str, Any]], tools: Any) -> bool:
    return bool(tools) or any(m.get("tool_calls") or m["role"] == "tool" for m in messages)


def for_template(messages: list[dict[str, Any]], tools: Any, support: ToolSupport) -> tuple[list[dict], Any]:
    """(messages, tools) as the template receives them: what it cannot show rewritten in the fallback form."""
    if not uses_tools(messages, tools):
        return messages, tools
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.get("tool_calls") and not support.calls:
            out.append({"role": message["role"], "content": calls_text(message["content"], message["tool_calls"])})
        elif message["role"] == "tool" and not support.results:
            out.append({"role": "user", "content": message["content"]})
        else:
            out.append(message)
    if tools and not support.tools:
        section = tools_text(tools)
        if out and out[0]["role"] == "system":
            system = out[0]["content"]
            out[0] = {**out[0], "content": f"{system}\n\n{section}" if system else section}
        else:
            out.insert(0, {"role": "system", "content": section})
        tools = None
    return out, tools


def tokenizer_render(tokenizer: Any) -> Render:
    """apply_chat_template as a Render."""
    def render(messages: list[dict], tools: Any, generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                             add_generation_prompt=generation_prompt)
    return render


def _support_for(tokenizer: Any, render: Render | None) -> ToolSupport:
    template = getattr(render, "chat_template", None) if render is not None else None
    template = template or getattr(tokenizer, "chat_template", None)
    return tool_support(render or tokenizer_render(tokenizer), template)


def template_inputs(tokenizer: Any, messages: list[dict[str, Any]], tools: Any,
                    render: Render | None = None) -> tuple[list[dict], Any]:
    """for_template with the support of the template that renders (`render`, else the tokenizer's own)."""
    if not uses_tools(messages, tools):
        return messages, tools
    return for_template(messages, tools, _support_for(tokenizer, render))


def template_lacks(tokenizer: Any, messages: list[dict[str, Any]], tools: Any,
                   render: Render | None = None) -> list[str]:
    """What of a conversation the template cannot show itself, so the fallback form carries it ([] for nothing)."""
    if not uses_tools(messages, tools):
        return []
    return _support_for(tokenizer, render).lacks(messages, tools)


FALLBACK_NOTE = "rendered in the fallback form (the tool list in the system turn, each call as a JSON line)"
