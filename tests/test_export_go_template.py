"""The Modelfile TEMPLATE executed by Go's text/template (Ollama's engine) renders what the reference renderer does.

Needs a Go toolchain (`apt-get install golang-go`); skipped without one. With the Jinja comparison in
test_export_modelfile.py this closes the chain: training template == reference renderer == Ollama TEMPLATE.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tunedeck.core.export.chat_format import detect_chat_format, go_template
from tunedeck.core.export.ollama_reference import ollama_inputs, render_like_ollama

from .export_helpers import CONVERSATIONS, llama3_tokenizer, qwen_tokenizer
from .export_helpers import TOOL as ESCAPED_TOOL
from .export_helpers import TOOL_CONVERSATION as CALLS

GO_PROGRAM = r"""
package main

import (
	"encoding/json"
	"os"
	"text/template"
)

// The shapes of Ollama's api.Message, api.ToolCall and api.Tool: the fields a TEMPLATE sees, in their JSON order.
type toolCall struct {
	Function struct {
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
	} `json:"function"`
}

type message struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

type tool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Parameters  struct {
			Type       string         `json:"type"`
			Required   []string       `json:"required,omitempty"`
			Properties map[string]any `json:"properties"`
		} `json:"parameters"`
	} `json:"function"`
}

type request struct {
	Template string    `json:"template"`
	System   string    `json:"system"`
	Messages []message `json:"messages"`
	Tools    []tool    `json:"tools"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		panic(err)
	}
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	tmpl := template.Must(template.New("t").Funcs(funcs).Parse(req.Template))
	data := map[string]any{"System": req.System, "Messages": req.Messages, "Tools": req.Tools, "Response": ""}
	if err := tmpl.Execute(os.Stdout, data); err != nil {
		panic(err)
	}
}
"""

TOOL = {"type": "function", "function": {"name": "add", "description": "Add two numbers",
                                         "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}
TOOL_CONVERSATION = [
    {"role": "user", "content": "sum two plus two"},
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "add", "arguments": {"a": 2, "b": 2}}}]},
    {"role": "tool", "content": "4"},
    {"role": "tool", "content": "four"},
    {"role": "user", "content": "and?"},
]


@pytest.fixture(scope="module")
def go_renderer(tmp_path_factory):
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain (apt-get install golang-go)")
    folder = tmp_path_factory.mktemp("gotemplate")
    (folder / "main.go").write_text(GO_PROGRAM, encoding="utf-8")
    env = {"GOCACHE": str(folder / "cache"), "GOPATH": str(folder / "gopath"), "HOME": str(folder),
           "PATH": "/usr/bin:/bin", "GO111MODULE": "off"}
    built = subprocess.run([go, "build", "-o", str(folder / "render"), str(folder / "main.go")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert built.returncode == 0, built.stderr

    def render(template: str, system: str, messages: list[dict], tools: list[dict] | None = None) -> str:
        request = json.dumps({"template": template, "system": system, "messages": messages, "tools": tools or []})
        done = subprocess.run([str(folder / "render")], input=request, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return render


@pytest.mark.parametrize("system", [None, "Be brief."])
@pytest.mark.parametrize("name", ["chatml", "qwen", "llama3", "smollm2"])
def test_go_template_renders_like_the_reference(go_renderer, tokenizer, name, system):
    tok = {"chatml": lambda: qwen_tokenizer("chatml"), "qwen": lambda: qwen_tokenizer("qwen"),
           "llama3": llama3_tokenizer, "smollm2": lambda: tokenizer}[name]()
    fmt = detect_chat_format(tok)
    template = go_template(fmt, gguf_adds_bos=False)
    for messages in CONVERSATIONS:
        prompt = messages if messages[-1]["role"] == "user" else messages[:-1]
        dot_system, dot_messages = ollama_inputs(prompt, system)
        expected = render_like_ollama(fmt, prompt, system)
        assert go_renderer(template, dot_system, dot_messages) == expected
        jinja = prompt if not system or prompt[0]["role"] == "system" else [{"role": "system", "content": system},
                                                                            *prompt]
        assert expected == tok.apply_chat_template(jinja, tokenize=False, add_generation_prompt=True)


def test_go_template_with_tools_matches_the_reference(go_renderer):
    fmt = detect_chat_format(qwen_tokenizer("qwen"))
    dot_system, dot_messages = ollama_inputs(TOOL_CONVERSATION, "Use tools.")
    got = go_renderer(go_template(fmt, False), dot_system, dot_messages, [TOOL])
    assert got == render_like_ollama(fmt, TOOL_CONVERSATION, "Use tools.", [TOOL])
    assert "<tool_response>\n4\n</tool_response>\n<tool_response>\nfour\n</tool_response><|im_end|>" in got


@pytest.mark.parametrize("system", ["", "Use tools."])
@pytest.mark.parametrize("name", ["chatml", "llama3", "smollm2"])
def test_go_template_carries_tools_in_the_fallback_form(go_renderer, tokenizer, name, system):
    tok = {"chatml": lambda: qwen_tokenizer("chatml"), "llama3": llama3_tokenizer, "smollm2": lambda: tokenizer}[name]()
    fmt = detect_chat_format(tok)
    prompt = CALLS[:-1]
    dot_system, dot_messages = ollama_inputs(prompt, system or None)
    got = go_renderer(go_template(fmt, False), dot_system, dot_messages, [ESCAPED_TOOL])
    assert got == render_like_ollama(fmt, prompt, system or None, [ESCAPED_TOOL], bos_token=tok.bos_token or "")
    assert '{"name": "add", "arguments": {"a":2,"b":2}}' in got
    no_tools = go_renderer(go_template(fmt, False), dot_system, ollama_inputs(CONVERSATIONS[0], None)[1])
    assert no_tools == render_like_ollama(fmt, CONVERSATIONS[0], system or None, bos_token=tok.bos_token or "")
