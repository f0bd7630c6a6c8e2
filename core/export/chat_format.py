"""The training chat template as Ollama sees it: its family, the Go TEMPLATE that matches it, and its stop strings."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tunedeck.core.data.tool_format import TOOLS_INTRO, TOOLS_OUTRO
from tunedeck.core.errors import ModelError
from tunedeck.core.models.generate import stop_token_ids

# End markers some families use beyond the named templates' lists (Llama 3.1 tool turns, Phi, Gemma).
EXTRA_END_MARKERS = ("<|eom_id|>", "<|end|>", "<end_of_turn>")
_PROBE = "PROBE-\u2603-7f3a"  # text no template adds on its own
_PROBE_TOOL = {"type": "function", "function": {"name": "probe_tool", "description": "d",
                                                "parameters": {"type": "object", "properties": {}}}}
QWEN_TOOLS_INTRO = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
QWEN_TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>"
)


@dataclass(frozen=True)
class ChatFormat:
    family: str  # chatml | llama3
    default_system: str | None  # what the template says when a conversation has no system message
    tools: bool  # Qwen-style tools in the system turn, <tool_call> / <tool_response> turns; else the fallback form
    bos_text: str  # text the template itself puts first (Llama 3: <|begin_of_text|>)


def stop_strings(tokenizer: Any) -> list[str]:
    """Every end-of-turn / end-of-text token the tokenizer defines, as text (one PARAMETER stop each)."""
    vocab = tokenizer.get_vocab()
    ids = stop_token_ids(tokenizer) + [vocab[m] for m in EXTRA_END_MARKERS if m in vocab]
    return list(dict.fromkeys(tokenizer.convert_ids_to_tokens(list(dict.fromkeys(ids)))))


def _render(tokenizer: Any, messages: list[dict[str, Any]], generation: bool, tools: Any = None) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=generation)


def detect_chat_format(tokenizer: Any) -> ChatFormat:
    """Recognise the tokenizer's chat template as ChatML (plain or Qwen with tools) or Llama 3."""
    text = _render(tokenizer, [{"role": "user", "content": _PROBE}], True)
    chatml_tail = f"<|im_start|>user\n{_PROBE}<|im_end|>\n<|im_start|>assistant\n"
    llama3_tail = (f"<|start_header_id|>user<|end_header_id|>\n\n{_PROBE}<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n")
    if text.endswith(chatml_tail):
        head = text[: -len(chatml_tail)]
        default = _system_text(head, r"<\|im_start\|>system\n(.*)<\|im_end\|>\n")
        return ChatFormat("chatml", default, _has_qwen_tools(tokenizer), "")
    if text.endswith(llama3_tail):
        head = text[: -len(llama3_tail)]
        bos = tokenizer.bos_token or ""
        bos_text = bos if bos and head.startswith(bos) else ""
        system_pattern = r"<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*)<\|eot_id\|>"
        default = _system_text(head[len(bos_text):], system_pattern)
        return ChatFormat("llama3", default, False, bos_text)
    raise ModelError("the chat template is neither ChatML nor Llama 3 style, so tunedeck cannot write an Ollama "
                     "TEMPLATE that matches it", where="model.template",
                     hint="train with model.template set to chatml, qwen or llama3")


def _system_text(head: str, pattern: str) -> str | None:
    if not head:
        return None
    match = re.fullmatch(pattern, head, flags=re.DOTALL)
    if match is None:
        raise ModelError("the chat template adds text before the first message that tunedeck cannot reproduce",
                         where="model.template", hint=f"it begins with {head[:80]!r}")
    return match.group(1)


def _has_qwen_tools(tokenizer: Any) -> bool:
    try:
        text = _render(tokenizer, [{"role": "user", "content": _PROBE}], True, tools=[_PROBE_TOOL])
    except Exception:  # noqa: BLE001 - templates without tool support may refuse the argument
        return False
    return QWEN_TOOLS_INTRO in text and QWEN_TOOLS_OUTRO in text


def _go_string(text: str) -> str:
    """A Go template action printing `text` literally (JSON string syntax is valid Go string syntax)."""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"


def _fallback_system(open_: str, close: str, default: str | None) -> str:
    """The system turn with the tool list in the fallback form (core/data/tool_format.py) when .Tools is set."""
    tools = ("{{ if .Tools }}" + _go_string(TOOLS_INTRO) + "{{ range .Tools }}\n{{ json . }}{{ end }}"
             + _go_string(TOOLS_OUTRO) + "{{ end }}")
    system = ("{{ if or .System .Tools }}" + open_ + "{{ .System }}{{ if and .System .Tools }}\n\n{{ end }}" + tools
              + close)
    if default is not None:
        system += "{{ else }}" + open_ + _go_string(default) + close
    return system + "{{ end }}"


# An assistant's tool calls in the fallback form: one JSON line each, after its text.
_FALLBACK_CALLS = ("{{ if .ToolCalls }}{{ if .Content }}\n{{ end }}{{ range $i, $c := .ToolCalls }}{{ if $i }}\n"
                   "{{ end }}{\"name\": \"{{ $c.Function.Name }}\", \"arguments\": {{ json $c.Function.Arguments }}}"
                   "{{ end }}{{ end }}")


def go_template(fmt: ChatFormat, gguf_adds_bos: bool) -> str:
    """An Ollama TEMPLATE (Go text/template over .System, .Messages, .Tools) rendering what the Jinja template did.

    Qwen renders tools its own way; ChatML and Llama 3 templates without tool support get the tool list and
    tool calls in tunedeck's fallback form, as training rendered them."""
    bos = "" if gguf_adds_bos else fmt.bos_text  # Ollama puts the BOS token first itself when the GGUF asks for it
    if fmt.family == "llama3":
        head = "<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        system = _fallback_system("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>", fmt.default_system)
        return (bos + system + "{{ range .Messages }}{{ if ne .Role \"system\" }}" + head
                + "{{ .Content }}" + _FALLBACK_CALLS + "<|eot_id|>{{ end }}{{ end }}"
                "<|start_header_id|>assistant<|end_header_id|>\n\n")
    if fmt.tools:
        default = _go_string(fmt.default_system or "")
        return (
            "<|im_start|>system\n{{ if .System }}{{ .System }}{{ else }}" + default + "{{ end }}"
            "{{ if .Tools }}" + QWEN_TOOLS_INTRO + "{{ range .Tools }}\n{{ json . }}{{ end }}" + QWEN_TOOLS_OUTRO
            + "{{ end }}<|im_end|>\n"
            "{{ $prev := \"\" }}{{ range .Messages }}"
            "{{ if and (eq $prev \"tool\") (ne .Role \"tool\") }}<|im_end|>\n{{ end }}"
            "{{ if eq .Role \"assistant\" }}<|im_start|>assistant{{ if .Content }}\n{{ .Content }}{{ end }}"
            "{{ range .ToolCalls }}\n<tool_call>\n{\"name\": \"{{ .Function.Name }}\", \"arguments\": "
            "{{ json .Function.Arguments }}}\n</tool_call>{{ end }}<|im_end|>\n"
            "{{ else if eq .Role \"tool\" }}{{ if ne $prev \"tool\" }}<|im_start|>user{{ end }}"
            "\n<tool_response>\n{{ .Content }}\n</tool_response>"
            "{{ else if ne .Role \"system\" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
            "{{ $prev = .Role }}{{ end }}"
            "{{ if eq $prev \"tool\" }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
        )
    system = _fallback_system("<|im_start|>system\n", "<|im_end|>\n", fmt.default_system)
    return (bos + system + "{{ range .Messages }}{{ if ne .Role \"system\" }}<|im_start|>{{ .Role }}\n"
            "{{ .Content }}" + _FALLBACK_CALLS + "<|im_end|>\n{{ end }}{{ end }}<|im_start|>assistant\n")
