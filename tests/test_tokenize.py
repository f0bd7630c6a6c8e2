"""Chat-template rendering and assistant-only labels, with SmolLM2's real tokenizer."""

from __future__ import annotations

import copy

import pytest

from tunedeck.core.data.conversation import Conversation, Message
from tunedeck.core.data.tokenize import IGNORE_INDEX, encode_conversation, encode_split
from tunedeck.core.errors import DataError
from tunedeck.core.models.templates import TEMPLATES


def conv(*pairs: tuple[str, str], tools=None) -> Conversation:
    return Conversation([Message(role, text) for role, text in pairs], row=0, tools=tools)


def trained_text(tokenizer, sample) -> str:
    return tokenizer.decode([label for label in sample.labels if label != IGNORE_INDEX])


def test_only_assistant_turns_and_their_end_token_are_trained(tokenizer):
    sample = encode_conversation(tokenizer, conv(("user", "Who are you?"), ("assistant", "A demo."),
                                                 ("user", "Sure?"), ("assistant", "Yes.")), cutoff_len=512)
    assert trained_text(tokenizer, sample) == "A demo.<|im_end|>\nYes.<|im_end|>\n"
    full = tokenizer.decode(sample.input_ids)
    assert full.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert "<|im_start|>user\nWho are you?<|im_end|>" in full


def test_cutoff_cuts_from_the_end_and_drops_samples_without_answer(tokenizer):
    long_prompt = "word " * 300
    sample = encode_conversation(tokenizer, conv(("user", long_prompt), ("assistant", "ok")), cutoff_len=64)
    assert len(sample.input_ids) == 64 and sample.full_length > 300
    assert sample.trained_tokens == 0
    short = conv(("user", "hi"), ("assistant", "hello " * 100))
    split = encode_split(tokenizer, [conv(("user", long_prompt), ("assistant", "ok")), short], cutoff_len=64)
    assert len(split.samples) == 1 and len(split.dropped) == 1 and split.truncated == 1


@pytest.mark.parametrize("name", ["chatml", "qwen"])
def test_named_templates_mask_the_same_way(tokenizer, name):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = TEMPLATES[name].jinja
    sample = encode_conversation(tok, conv(("system", "Score 0-10 as JSON."), ("user", "essay"),
                                           ("assistant", '{"score": 7}')), cutoff_len=512)
    assert trained_text(tok, sample) == '{"score": 7}<|im_end|>\n'
    text = tok.decode(sample.input_ids)
    assert text.startswith("<|im_start|>system\nScore 0-10 as JSON.<|im_end|>\n")


def test_qwen_template_renders_tools_and_tool_calls(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = TEMPLATES["qwen"].jinja
    tools = [{"type": "function", "function": {"name": "invoice", "description": "d", "parameters": {}}}]
    messages = Conversation([
        Message("user", "Invoice John"),
        Message("assistant", "", [{"type": "function", "function": {"name": "invoice",
                                                                    "arguments": {"who": "John"}}}]),
        Message("tool", '{"id": 7}'),
        Message("assistant", "Invoice 7 is ready."),
    ], row=0, tools=tools)
    sample = encode_conversation(tok, messages, cutoff_len=1024)
    text = tok.decode(sample.input_ids)
    assert "You are Qwen, created by Alibaba Cloud." in text
    assert '<tools>\n{"type": "function", "function": {"name": "invoice"' in text
    assert '<tool_call>\n{"name": "invoice", "arguments": {"who": "John"}}\n</tool_call><|im_end|>' in text
    assert "<|im_start|>user\n<tool_response>\n{\"id\": 7}\n</tool_response><|im_end|>" in text
    trained = trained_text(tok, sample)
    assert '"arguments": {"who": "John"}' in trained and "Invoice 7 is ready.<|im_end|>" in trained
    assert "tool_response" not in trained and "Invoice John" not in trained


def test_tokenizer_without_template_is_refused(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = None
    with pytest.raises(DataError, match="no chat template"):
        encode_split(tok, [conv(("user", "a"), ("assistant", "b"))], cutoff_len=64)
