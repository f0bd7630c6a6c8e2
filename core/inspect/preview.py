"""One sample exactly as the model sees it: the chat template's text, with trained and cut-away parts marked."""

from __future__ import annotations

from typing import Any, NamedTuple

from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.tokenize import assistant_spans
from tunedeck.core.inspect.lengths import ChatRenderer


class Segment(NamedTuple):
    """A run of tokens that share their marks. `trained`: assistant tokens the loss is computed on.
    `cut`: tokens past the cutoff, which training never sees."""

    text: str
    trained: bool
    cut: bool


def render_sample(conv: Conversation, tokenizer: Any, cutoff: int, template: str | None = None) -> list[Segment]:
    """The rendered sample as segments (text, trained, cut), in order; joined, their texts give the whole
    rendered text. Tokens and masks are the training's own (same template, tokenizer and assistant spans);
    `template` is a name from core.templates, or None / "auto" for the tokenizer's template."""
    from tunedeck.core.inspect.inspect import chat_template_text

    _, jinja = chat_template_text(tokenizer, template)
    text, spans = assistant_spans(tokenizer, conv, ChatRenderer(tokenizer, jinja))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [start for start, _ in encoded["offset_mapping"]]
    segments: list[Segment] = []
    span_index = 0
    run_start, run_marks = 0, None
    for position, start in enumerate(starts):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        trained = span_index < len(spans) and spans[span_index][0] <= start
        marks = (trained, position >= cutoff)
        if marks != run_marks:
            if run_marks is not None and start > run_start:
                segments.append(Segment(text[run_start:start], *run_marks))
                run_start = start
            run_marks = marks
    if run_marks is not None and run_start < len(text):
        segments.append(Segment(text[run_start:], *run_marks))
    return segments


def conversation_at(conversations: list[Conversation], row: int) -> Conversation | None:
    """The conversation read from file row `row` (0-based), or None when that row could not be read."""
    low, high = 0, len(conversations)
    while low < high:  # conversations come in row order
        middle = (low + high) // 2
        if conversations[middle].row < row:
            low = middle + 1
        else:
            high = middle
    return conversations[low] if low < len(conversations) and conversations[low].row == row else None
