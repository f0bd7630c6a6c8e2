"""A reference re-implementation of Ollama, used only to check exports without running Ollama.

It follows three things Ollama does, and nothing else:
- reading a Modelfile (Ollama's parser/parser.go): `parse_modelfile`;
- turning a chat request into the TEMPLATE's inputs (.System and .Messages: the Modelfile's SYSTEM when the
  request has none, consecutive messages of one role merged): `ollama_inputs`;
- executing the TEMPLATE tunedeck writes for each chat format (Go's text/template, with Ollama's `json`
  function being Go's json.Marshal, and the BOS token Ollama puts first when the GGUF asks for it):
  `render_like_ollama`.
The export writes with `modelfile.render_modelfile` and `chat_format.go_template`; this module only reads and
renders like Ollama, so that `checks.modelfile_template_check` and the tests can compare. It keeps its own copy of
Go's strconv.IsPrint rather than the writer's: a check that shared the writer's assumptions could not catch them.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from tunedeck.core.data.tool_format import TOOLS_INTRO, TOOLS_OUTRO
from tunedeck.core.export.chat_format import QWEN_TOOLS_INTRO, QWEN_TOOLS_OUTRO, ChatFormat

_NEWLINES = ("\r", "\n")


def go_is_print(ch: str) -> bool:
    """Go's strconv.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(command, value) pairs as Ollama's parser reads them.

    Follows Ollama's parser/parser.go: values end at a space or line end once they unquote; \"\"\"...\"\"\"
    and "..." strip their quotes; characters Go's strconv.IsPrint rejects are dropped; '#' starts a comment.
    """
    commands: list[tuple[str, str]] = []
    state, buf, name = "nil", "", ""
    for ch in text:
        if state == "nil":
            if ch == "#":
                state = "comment"
            elif ch not in " \t\r\n":
                state, buf = "name", ch
        elif state == "comment":
            if ch in _NEWLINES:
                state = "nil"
        elif state in ("name", "parameter"):
            if ch in " \t":
                word = buf.lower()
                if state == "name" and word == "parameter":
                    state, buf = "parameter", ""
                else:
                    name = "model" if word == "from" and state == "name" else (buf if state == "parameter" else word)
                    state, buf = "value", ""
            elif ch.isalnum() or ch == "_":
                buf += ch
            else:
                raise ValueError(f"invalid command character {ch!r}")
        elif state == "value":
            if ch in _NEWLINES or ch in " \t":
                value, ok = _unquote(buf.strip())
                if not ok or ch in " \t":
                    buf += ch
                    continue
                commands.append((name, value))
                state, buf = "nil", ""
            elif go_is_print(ch):
                buf += ch
    if state == "value":
        value, ok = _unquote(buf.strip())
        if not ok:
            raise ValueError("unterminated quoted value")
        commands.append((name, value))
    elif state not in ("nil", "comment"):
        raise ValueError("unexpected end of file")
    return commands


def _unquote(s: str) -> tuple[str, bool]:
    if s.startswith('"""'):
        return (s[3:-3], True) if len(s) >= 6 and s.endswith('"""') else ("", False)
    if s.startswith('"'):
        return (s[1:-1], True) if len(s) >= 2 and s.endswith('"') else ("", False)
    return s, True


def ollama_inputs(messages: list[dict[str, Any]], modelfile_system: str | None) -> tuple[str, list[dict[str, Any]]]:
    """What Ollama hands the TEMPLATE for a chat request: (.System, .Messages).

    Ollama prepends the Modelfile's SYSTEM when the request has no system message, merges consecutive
    messages of one role (tool results excepted) with a blank line, and joins system messages into .System.
    """
    if modelfile_system and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": modelfile_system}, *messages]
    collated: list[dict[str, Any]] = []
    for message in messages:
        if collated and collated[-1]["role"] == message["role"] and message["role"] != "tool":
            collated[-1] = {**collated[-1], "content": collated[-1]["content"] + "\n\n" + message["content"]}
        else:
            collated.append(dict(message))
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return system, collated


def render_like_ollama(fmt: ChatFormat, messages: list[dict[str, Any]], modelfile_system: str | None = None,
                       tools: list[dict[str, Any]] | None = None, gguf_adds_bos: bool = False,
                       bos_token: str = "") -> str:
    """The text Ollama feeds the model for a chat request (BOS included as text), for comparing with Jinja."""
    system, msgs = ollama_inputs(messages, modelfile_system)
    out = bos_token if gguf_adds_bos else fmt.bos_text
    if fmt.family == "llama3":
        return out + _render_llama3(fmt, system, msgs, tools)
    if not fmt.tools:
        return out + _render_chatml(fmt, system, msgs, tools)
    return out + _render_qwen_tools(fmt, system, msgs, tools)


def _fallback_system(system: str, tools: list[dict[str, Any]] | None, default: str | None) -> str | None:
    """The system text of the fallback form: .System, then the tool list after a blank line; else the default."""
    if not (system or tools):
        return default
    listed = TOOLS_INTRO + "".join("\n" + go_json(t) for t in tools) + TOOLS_OUTRO if tools else ""
    return system + ("\n\n" if system and tools else "") + listed


def _fallback_content(message: dict[str, Any]) -> str:
    """A message's text, then each tool call as a line of JSON (the fallback form)."""
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function", call)
        calls.append(f"{{\"name\": \"{fn['name']}\", \"arguments\": {go_json(fn['arguments'])}}}")
    return "\n".join([message["content"], *calls] if message["content"] else calls)


def _render_llama3(fmt: ChatFormat, system: str, msgs: list[dict[str, Any]],
                   tools: list[dict[str, Any]] | None) -> str:
    out = ""
    system_text = _fallback_system(system, tools, fmt.default_system)
    if system_text is not None:
        out += f"<|start_header_id|>system<|end_header_id|>\n\n{system_text}<|eot_id|>"
    for m in msgs:
        if m["role"] != "system":
            out += f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{_fallback_content(m)}<|eot_id|>"
    return out + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _render_chatml(fmt: ChatFormat, system: str, msgs: list[dict[str, Any]],
                   tools: list[dict[str, Any]] | None) -> str:
    out = ""
    system_text = _fallback_system(system, tools, fmt.default_system)
    if system_text is not None:
        out += f"<|im_start|>system\n{system_text}<|im_end|>\n"
    for m in msgs:
        if m["role"] != "system":
            out += f"<|im_start|>{m['role']}\n{_fallback_content(m)}<|im_end|>\n"
    return out + "<|im_start|>assistant\n"


def _render_qwen_tools(fmt: ChatFormat, system: str, msgs: list[dict[str, Any]],
                       tools: list[dict[str, Any]] | None) -> str:
    out = "<|im_start|>system\n" + (system or fmt.default_system or "")
    if tools:
        out += QWEN_TOOLS_INTRO + "".join("\n" + go_json(t) for t in tools) + QWEN_TOOLS_OUTRO
    out += "<|im_end|>\n"
    prev = ""
    for m in msgs:
        role = m["role"]
        if prev == "tool" and role != "tool":
            out += "<|im_end|>\n"
        if role == "assistant":
            out += "<|im_start|>assistant" + (f"\n{m['content']}" if m["content"] else "")
            for call in m.get("tool_calls") or []:
                fn = call.get("function", call)
                arguments = go_json(fn["arguments"])
                out += f"\n<tool_call>\n{{\"name\": \"{fn['name']}\", \"arguments\": {arguments}}}\n</tool_call>"
            out += "<|im_end|>\n"
        elif role == "tool":
            opening = "<|im_start|>user" if prev != "tool" else ""
            out += f"{opening}\n<tool_response>\n{m['content']}\n</tool_response>"
        elif role != "system":
            out += f"<|im_start|>{role}\n{m['content']}<|im_end|>\n"
        prev = role
    if prev == "tool":
        out += "<|im_end|>\n"
    return out + "<|im_start|>assistant\n"


def go_json(value: Any) -> str:
    """Go's json.Marshal: no spaces; arguments given as a JSON string are decoded first, as Ollama does."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c").replace(
        ">", "\\u003e").replace("&", "\\u0026")
