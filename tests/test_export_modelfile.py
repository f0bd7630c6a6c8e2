"""Modelfiles as Ollama reads them, stop tokens per tokenizer family, and the TEMPLATE against the Jinja one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunedeck.core.config import SamplingConfig
from tunedeck.core.data.tool_format import template_inputs
from tunedeck.core.errors import ConfigError
from tunedeck.core.export.chat_format import detect_chat_format, go_template, stop_strings
from tunedeck.core.export.checks import modelfile_template_check, prompt_messages, template_round_trip
from tunedeck.core.export.modelfile import ModelfileSpec, quote_value, render_modelfile
from tunedeck.core.export.ollama_reference import parse_modelfile, render_like_ollama
from tunedeck.core.models.loading import BUILTIN_MODELS, builtin_gguf_path

from .export_helpers import CONVERSATIONS, TOOL, TOOL_CONVERSATION, llama3_tokenizer, qwen_tokenizer


def spec(system: str | None, template: str = "{{ .Prompt }}") -> ModelfileSpec:
    return ModelfileSpec(gguf_file="m-Q8_0.gguf", template=template, system=system, stops=["<|im_end|>",
                         "<|endoftext|>"], num_ctx=4096, sampling=SamplingConfig(temperature=0.2, top_k=20),
                         comment="made for a test\nsecond line")


def test_modelfile_reads_back_exactly_with_quotes_in_the_system_prompt():
    system = 'Reply as JSON like """{"score": 7}""" and never say """ mid-line.\nSecond line "quoted"'
    text = render_modelfile(spec(system, template='{{ if .System }}"{{ .System }}"{{ end }}\n'))
    assert parse_modelfile(text) == [
        ("model", "./m-Q8_0.gguf"),
        ("template", '{{ if .System }}"{{ .System }}"{{ end }}\n'),
        ("system", system),
        ("stop", "<|im_end|>"), ("stop", "<|endoftext|>"),
        ("num_ctx", "4096"), ("temperature", "0.2"), ("top_p", "0.9"), ("top_k", "20"), ("repeat_penalty", "1.1"),
    ]
    assert text.startswith("# made for a test\n# second line\nFROM ./m-Q8_0.gguf\n")


@pytest.mark.parametrize("system", ['ends with """', '"""starts with quotes', '""""', 'a "\n b"', '  padded  '])
def test_edge_quotes_survive(system):
    assert dict(parse_modelfile(render_modelfile(spec(system))))["system"] == system


def test_a_line_ending_in_triple_quotes_is_refused_not_mangled():
    with pytest.raises(ConfigError, match=r'line 1 of the system prompt ends with """'):
        quote_value('first """\nsecond', "the system prompt")
    with pytest.raises(ConfigError, match="U\\+0007"):
        quote_value("bell \x07", "the system prompt")


PRINTABLE = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


@given(st.text(alphabet=PRINTABLE | st.sampled_from(['"', "\n", " ", "\t"]), min_size=1, max_size=60))
def test_any_representable_text_reads_back(text):
    try:
        quoted = quote_value(text, "x")
    except ConfigError:
        return  # refused with a reason rather than written wrong
    assert parse_modelfile(f"FROM ./m.gguf\nSYSTEM {quoted}\n")[1] == ("system", text)


def test_stop_tokens_chatml_and_llama3():
    assert stop_strings(qwen_tokenizer()) == ["<|im_end|>", "<|endoftext|>"]  # Qwen2.5 has two
    assert stop_strings(llama3_tokenizer()) == ["<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"]


def test_stop_tokens_of_the_real_smollm2_tokenizer(tokenizer):
    assert stop_strings(tokenizer) == ["<|im_end|>", "<|endoftext|>"]


@pytest.mark.parametrize("system", [None, "Be brief."])
@pytest.mark.parametrize("make", [lambda: qwen_tokenizer("chatml"), lambda: qwen_tokenizer("qwen"), llama3_tokenizer],
                         ids=["chatml", "qwen", "llama3"])
def test_ollama_rendering_matches_the_training_template(make, system):
    tok = make()
    fmt = detect_chat_format(tok)
    for messages in CONVERSATIONS:
        prompt = messages if messages[-1]["role"] == "user" else messages[:-1]
        jinja_msgs = prompt if not system or prompt[0]["role"] == "system" else [
            {"role": "system", "content": system}, *prompt]
        expected = tok.apply_chat_template(jinja_msgs, tokenize=False, add_generation_prompt=True)
        assert render_like_ollama(fmt, prompt, system, bos_token=tok.bos_token or "") == expected


def test_formats_are_recognised(tokenizer):
    qwen = detect_chat_format(qwen_tokenizer("qwen"))
    assert (qwen.family, qwen.tools, qwen.default_system) == (
        "chatml", True, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
    assert detect_chat_format(qwen_tokenizer("chatml")) == detect_chat_format(qwen_tokenizer("chatml"))
    llama = detect_chat_format(llama3_tokenizer())
    assert (llama.family, llama.bos_text, llama.default_system) == ("llama3", "<|begin_of_text|>", None)
    smol = detect_chat_format(tokenizer)
    assert smol.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert '{{ "You are a helpful AI assistant named SmolLM, trained by Hugging Face" }}' in go_template(smol, False)


def test_llama3_template_leaves_bos_to_ollama_when_the_gguf_adds_it():
    fmt = detect_chat_format(llama3_tokenizer())
    assert go_template(fmt, gguf_adds_bos=True).startswith("{{ if or .System .Tools }}")
    assert go_template(fmt, gguf_adds_bos=False).startswith("<|begin_of_text|>{{ if or .System .Tools }}")


@pytest.mark.parametrize("system", [None, "Be brief."])
@pytest.mark.parametrize("make", [lambda: qwen_tokenizer("chatml"), llama3_tokenizer, "smollm2"],
                         ids=["chatml", "llama3", "smollm2"])
def test_templates_without_tools_carry_them_to_ollama_in_the_fallback_form(make, system, tokenizer):
    tok = tokenizer if make == "smollm2" else make()
    fmt = detect_chat_format(tok)
    assert not fmt.tools
    prompt = prompt_messages(TOOL_CONVERSATION)
    jinja = prompt if not system else [{"role": "system", "content": system}, *prompt]
    expected = tok.apply_chat_template(*template_inputs(tok, jinja, [TOOL]), tokenize=False, add_generation_prompt=True)
    got = render_like_ollama(fmt, prompt, system, [TOOL], bos_token=tok.bos_token or "")
    assert got == expected
    assert '{"name": "add", "arguments": {"a":2,"b":2}}\n{"name": "add", "arguments": {"a":4,"b":0}}' in got
    assert '"description":"Add two numbers \\u003ca \\u0026 b\\u003e"' in got  # Go's json escaping, as Ollama
    check = modelfile_template_check(tok, fmt, [(TOOL_CONVERSATION, [TOOL])], system, False)
    assert check["passed"] and check["compared"] == 1, check


def test_the_gguf_round_trip_covers_a_tool_call_conversation(tokenizer):
    gguf = builtin_gguf_path(BUILTIN_MODELS["smollm2-135m-instruct"])
    checked = template_round_trip(gguf, tokenizer, [(TOOL_CONVERSATION, [TOOL]), (CONVERSATIONS[2], None)])
    assert checked["passed"] and checked["compared"] == 4, checked
