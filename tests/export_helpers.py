"""Tokenizers built in tests: ChatML (Qwen-like) and Llama-3 style vocabularies with real chat templates."""

from __future__ import annotations

from typing import Any

from tunedeck.core.models.templates import TEMPLATES

WORDS = ["hello", "hi", "who", "are", "you", "i", "am", "a", "bot", "sum", "is", "four", "two", "plus", "?", "."]


def build_tokenizer(specials: list[str], eos: str, template: str, bos: str | None = None) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(["<unk>", *specials, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token=eos, bos_token=bos)
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.chat_template = template
    return tokenizer


def qwen_tokenizer(template: str = "qwen") -> Any:
    return build_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_end|>", TEMPLATES[template].jinja)


def llama3_tokenizer() -> Any:
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                "<|eom_id|>"]
    return build_tokenizer(specials, "<|eot_id|>", TEMPLATES["llama3"].jinja, bos="<|begin_of_text|>")


CONVERSATIONS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "Who are you?"}],
    [{"role": "system", "content": "You answer in one line."}, {"role": "user", "content": "hi"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."},
     {"role": "user", "content": "And \"quoted\" {{ braces }} \u00e9?"}],
    [{"role": "system", "content": "Line one\nline two"}, {"role": "user", "content": "a"},
     {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
]

TOOL = {"type": "function", "function": {"name": "add", "description": "Add two numbers <a & b>",
                                         "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}
# A tool-call conversation: a call with no text, a call after text, two results, and the final answer.
TOOL_CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "sum two plus two"},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
                                                         "function": {"name": "add", "arguments": {"a": 2, "b": 2}}}]},
    {"role": "tool", "content": "4"},
    {"role": "assistant", "content": "Checking once more.",
     "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 2}}},
                    {"type": "function", "function": {"name": "add", "arguments": {"a": 4, "b": 0}}}]},
    {"role": "tool", "content": "4"},
    {"role": "tool", "content": "4"},
    {"role": "user", "content": "and?"},
    {"role": "assistant", "content": "four"},
]
