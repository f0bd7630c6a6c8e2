"""Render conversations through the chat template and mark which tokens are trained (assistant only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.tool_format import template_inputs
from tunedeck.core.errors import DataError

IGNORE_INDEX = -100


@dataclass(slots=True)
class EncodedSample:
    input_ids: list[int]
    labels: list[int]
    full_length: int  # tokens before the cutoff was applied

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _render(tokenizer: Any, messages: list[dict], tools: Any, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
    )


Render = Callable[[list[dict], Any, bool], str]  # (messages, tools, add_generation_prompt) -> text


def assistant_spans(
    tokenizer: Any, conv: Conversation, render: Render | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character spans each assistant turn adds to it.

    Works with any template that renders a conversation's prefix as a prefix of the whole
    (true of ChatML, Llama-3, Qwen2.5 and most others): the span of assistant turn i is what
    rendering messages[:i+1] adds after rendering messages[:i] with the generation prompt.
    `render` replaces apply_chat_template with an equivalent, faster renderer (the inspection uses one).
    Tools, tool calls and tool results the template cannot show are rendered in the fallback form
    (core/data/tool_format.py), so they are trained, never dropped.
    """
    if render is None:
        def render(messages: list[dict], tools: Any, generation_prompt: bool) -> str:
            return _render(tokenizer, messages, tools, generation_prompt)

    messages, tools = template_inputs(tokenizer, conv.to_chat(), conv.tools, render)
    full = render(messages, tools, False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        try:
            prefix = render(messages[:index], tools, True) if index else ""
            upto = full if index == len(messages) - 1 else render(messages[: index + 1], tools, False)
        except Exception:  # strict templates refuse some prefixes; fall back to a text search
            prefix = upto = ""
        if prefix and full.startswith(upto) and upto.startswith(prefix) and len(prefix) >= cursor:
            spans.append((len(prefix), len(upto)))
            cursor = len(upto)
            continue
        start = full.find(message["content"], cursor) if message["content"] else -1
        if start < 0:
            continue
        end = start + len(message["content"])
        for stop in _end_markers(tokenizer):
            if full.startswith(stop, end):
                end += len(stop)
                break
        spans.append((start, end))
        cursor = end
    return full, spans


def _end_markers(tokenizer: Any) -> list[str]:
    markers = [t for t in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>") if t in tokenizer.get_vocab()]
    if tokenizer.eos_token:
        markers.append(tokenizer.eos_token)
    return markers


def encode_conversation(tokenizer: Any, conv: Conversation, cutoff_len: int) -> EncodedSample:
    """Token ids and labels (assistant tokens only), cut to cutoff_len from the start.

    Continued-pretraining text (meta["text"], no messages) skips the chat template: every token is trained.
    """
    if "text" in conv.meta:
        ids = list(tokenizer(conv.meta["text"], add_special_tokens=True)["input_ids"])
        if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
            ids.append(tokenizer.eos_token_id)
        return EncodedSample(ids[:cutoff_len], ids[:cutoff_len], len(ids))
    text, spans = assistant_spans(tokenizer, conv)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoded["input_ids"])
    labels = [IGNORE_INDEX] * len(input_ids)
    span_index = 0
    for position, (start, _end) in enumerate(encoded["offset_mapping"]):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        if span_index == len(spans):
            break
        if spans[span_index][0] <= start:
            labels[position] = input_ids[position]
    return EncodedSample(input_ids[:cutoff_len], labels[:cutoff_len], len(input_ids))


@dataclass
class EncodedSplit:
    samples: list[EncodedSample]
    truncated: int  # samples longer than the cutoff (cut, still trained)
    dropped: list[Conversation]  # samples whose whole assistant part fell past the cutoff

    def as_columns(self) -> dict[str, list[list[int]]]:
        return {"input_ids": [s.input_ids for s in self.samples], "labels": [s.labels for s in self.samples]}

    @property
    def tokens(self) -> int:
        return sum(len(s.input_ids) for s in self.samples)


def encode_split(tokenizer: Any, conversations: list[Conversation], cutoff_len: int) -> EncodedSplit:
    needs_template = any("text" not in c.meta for c in conversations)
    if needs_template and not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "the tokenizer has no chat template",
            where="model.template",
            hint="set model.template to chatml, qwen or llama3 to match how the model was trained",
        )
    samples, dropped, truncated = [], [], 0
    for conv in conversations:
        sample = encode_conversation(tokenizer, conv, cutoff_len)
        if sample.trained_tokens == 0:
            dropped.append(conv)
            continue
        truncated += sample.full_length > cutoff_len
        samples.append(sample)
    return EncodedSplit(samples, truncated, dropped)
